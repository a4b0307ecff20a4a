"""OAuth2 authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636) for browser clients, kept
to RFC 9700 (OAuth 2.0 Security Best Current Practice):

* PKCE is required and only ``S256`` is accepted (§2.1.1); the S256 transform is authlib's.
* ``redirect_uri`` must equal a registered URI exactly (§2.1, §4.1.3); a bad ``client_id`` or
  ``redirect_uri`` is answered 400 here and never redirected (RFC 6749 §4.1.2.1).
* a code lives 60 s and works once; a second use of a code revokes the token the first use got
  (RFC 6749 §4.1.2, a code replay means it leaked).
* the redirect carries ``iss`` (RFC 9207) against mix-up attacks; the login form's POST is
  answered 303 so a browser never re-posts the password (§4.12).

Codes are kept in Redis under the SHA-256 of the code, never the code itself.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
import time
from typing import Annotated
from urllib.parse import urlencode

from authlib.oauth2.rfc7636.challenge import CODE_CHALLENGE_PATTERN, CODE_VERIFIER_PATTERN, create_s256_code_challenge
from fastapi import APIRouter, Form, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from services.auth import clients
from services.common.types import Text

router = APIRouter(tags=["auth"])

CODE_TTL_S = 60
_CODE = "oauth:code:"
_USED = "oauth:code-used:"


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _problem(code: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description, "detail": description}, status_code=code)


def _redirect(uri: str, params: dict, status_code: int) -> RedirectResponse:
    sep = "&" if "?" in uri else "?"
    return RedirectResponse(uri + sep + urlencode({k: v for k, v in params.items() if v is not None}),
                            status_code=status_code)


def _check_request(request: Request, response_type, client_id, redirect_uri, code_challenge,
                   code_challenge_method, state, status_code: int):
    """None if the authorization request is acceptable, else the response to give."""
    client = clients.PUBLIC_CLIENTS.get(client_id or "")
    if client is None:
        return _problem(400, "invalid_client", f"unknown client_id {client_id!r}: no redirect is made")
    if redirect_uri not in client.redirect_uris:
        return _problem(400, "invalid_request", f"redirect_uri {redirect_uri!r} is not registered for client "
                        f"{client.client_id!r} (exact match required): no redirect is made")
    iss = request.app.state.settings.jwt_issuer

    def error(err: str, description: str):
        return _redirect(redirect_uri, {"error": err, "error_description": description, "state": state, "iss": iss},
                         status_code)

    if response_type != "code":
        return error("unsupported_response_type", "only response_type=code is supported")
    if code_challenge_method != "S256":
        return error("invalid_request", "PKCE is required with code_challenge_method=S256 ('plain' is not accepted)")
    if not code_challenge or not CODE_CHALLENGE_PATTERN.match(code_challenge):
        return error("invalid_request", "code_challenge must be 43-128 characters of [A-Za-z0-9-._~]")
    return None


_FORM = """<!doctype html><html><head><meta charset="utf-8"><title>CloudMart sign-in</title></head>
<body><h1>Sign in to CloudMart</h1><p>{client} asks for: {scope}</p>
<form method="post" action="authorize">{hidden}
<label>User <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button></form></body></html>"""


@router.get("/authorize", response_class=HTMLResponse, summary="Authorization endpoint (code + PKCE): the sign-in form",
            responses={302: {"description": "Error redirect to the client"},
                       400: {"description": "Unknown client or unregistered redirect_uri (never redirected)"}})
async def authorize_form(
    request: Request,
    response_type: Annotated[str | None, Query(max_length=32)] = None,
    client_id: Annotated[str | None, Query(max_length=64)] = None,
    redirect_uri: Annotated[str | None, Query(max_length=512)] = None,
    code_challenge: Annotated[str | None, Query(max_length=128)] = None,
    code_challenge_method: Annotated[str | None, Query(max_length=16)] = None,
    state: Annotated[str | None, Query(max_length=256)] = None,
    scope: Annotated[str | None, Query(max_length=256)] = None,
):
    problem = _check_request(request, response_type, client_id, redirect_uri, code_challenge, code_challenge_method,
                             state, 302)
    if problem is not None:
        return problem
    fields = {"response_type": response_type, "client_id": client_id, "redirect_uri": redirect_uri,
              "code_challenge": code_challenge, "code_challenge_method": code_challenge_method,
              "state": state, "scope": scope}
    hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">'
                     for k, v in fields.items() if v is not None)
    return HTMLResponse(_FORM.format(client=html.escape(client_id), scope=html.escape(scope or "(default scopes)"),
                                     hidden=hidden),
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "frame-ancestors 'none'"})


@router.post("/authorize", summary="Sign in and authorize: redirects (303) to the client with a one-time code",
             responses={303: {"description": "Redirect to the client with code (or error) and state"},
                        400: {"description": "Unknown client or unregistered redirect_uri"},
                        401: {"description": "Wrong username or password"}})
async def authorize(
    request: Request,
    username: Annotated[Text, Form(max_length=64)],
    password: Annotated[Text, Form(max_length=256)],
    client_id: Annotated[Text, Form(max_length=64)],
    redirect_uri: Annotated[Text, Form(max_length=512)],
    response_type: Annotated[Text | None, Form(max_length=32)] = None,
    code_challenge: Annotated[Text | None, Form(max_length=128)] = None,
    code_challenge_method: Annotated[Text | None, Form(max_length=16)] = None,
    state: Annotated[Text | None, Form(max_length=256)] = None,
    scope: Annotated[Text | None, Form(max_length=256)] = None,
    x_forwarded_for: Annotated[str | None, Header(include_in_schema=False)] = None,
):
    from services.auth import api

    problem = _check_request(request, response_type, client_id, redirect_uri, code_challenge, code_challenge_method,
                             state, 303)
    if problem is not None:
        return problem
    throttle = request.app.state.login_throttle
    ip = api._client_ip(request, x_forwarded_for)
    if (retry_s := await throttle.retry_after(username, ip)) is not None:
        return api._throttled(retry_s)
    try:
        roles = await api._check_password(request, username, password)
    except api.CredentialStoreUnavailable as exc:
        return JSONResponse({"detail": f"cannot check the password now: {exc}"}, status_code=503,
                            headers={"Retry-After": "1"})
    if roles is None:
        await throttle.failed(username, ip)
        return _problem(401, "access_denied", "wrong username or password")
    await throttle.succeeded(username)
    iss = request.app.state.settings.jwt_issuer
    try:
        scopes = clients.grant_scopes(roles, scope)
    except ValueError as exc:
        return _redirect(redirect_uri, {"error": "invalid_scope", "error_description": str(exc), "state": state,
                                        "iss": iss}, 303)
    code = secrets.token_urlsafe(32)
    grant = {"client_id": client_id, "redirect_uri": redirect_uri, "code_challenge": code_challenge,
             "sub": username, "roles": roles, "scopes": scopes}
    await request.app.state.redis.set(_CODE + _digest(code), json.dumps(grant), ex=CODE_TTL_S)
    return _redirect(redirect_uri, {"code": code, "state": state, "iss": iss}, 303)


async def exchange_code(request: Request, *, code, redirect_uri, client_id, code_verifier):
    """``grant_type=authorization_code``: the code, its client and redirect URI, and the PKCE verifier."""
    from services.auth import api

    missing = [n for n, v in (("code", code), ("redirect_uri", redirect_uri), ("client_id", client_id),
                              ("code_verifier", code_verifier)) if not v]
    if missing:
        return _problem(400, "invalid_request", f"grant_type=authorization_code needs {', '.join(missing)}")
    redis = request.app.state.redis
    digest = _digest(code)
    async with redis.pipeline(transaction=True) as pipe:     # GET and DEL at once: one use only
        pipe.get(_CODE + digest)
        pipe.delete(_CODE + digest)
        raw, deleted = await pipe.execute()
    if raw is None or not deleted:
        used = await redis.get(_USED + digest)
        if used is not None:
            first = json.loads(used)
            await request.app.state.deny_list.revoke(first["jti"], first["exp"])
            return _problem(400, "invalid_grant", "authorization code already used: the token issued for it "
                                                  "is now revoked")
        return _problem(400, "invalid_grant", "unknown or expired authorization code")
    grant = json.loads(raw)
    if grant["client_id"] != client_id or grant["redirect_uri"] != redirect_uri:
        return _problem(400, "invalid_grant", "the code was issued to another client or redirect_uri")
    if not CODE_VERIFIER_PATTERN.match(code_verifier):
        return _problem(400, "invalid_grant", "code_verifier must be 43-128 characters of [A-Za-z0-9-._~] "
                                              "(RFC 7636 §4.1)")
    if not hmac.compare_digest(create_s256_code_challenge(code_verifier), grant["code_challenge"]):
        return _problem(400, "invalid_grant", "code_verifier does not match the code_challenge")
    token, claims = api.sign_claims(request, grant["sub"], grant["roles"], grant["scopes"])
    ttl = max(1, int(claims["exp"] - time.time()))
    await redis.set(_USED + digest, json.dumps({"jti": claims["jti"], "exp": claims["exp"]}), ex=ttl)
    return api.TokenPublic(access_token=token, expires_in=request.app.state.settings.token_ttl_s,
                           scope=" ".join(grant["scopes"]))
