"""Auth routes under /api/auth: token (password, client_credentials, authorization_code + PKCE),
authorize, revoke, JWKS and key rotation, and the gateway's forward-auth verify."""

from __future__ import annotations

import base64
import hmac
import time
import uuid
from typing import Annotated, Literal

import jwt
from fastapi import APIRouter, Depends, Form, Header, Request, Response, status
from fastapi.responses import JSONResponse

from services.auth import clients, pkce
from services.auth.credentials import CredentialStoreUnavailable
from services.auth.keyring import RingReadOnly
from services.auth.models import JwksPublic, KeyRingPublic, Problem, RevokePublic, RotateRequest, TokenPublic, VerifyPublic
from services.common import auth, metrics
from services.common.demo import DEMO_ACCOUNTS, DEMO_CLIENTS
from services.common.passwords import HasherBusy
from services.common.types import Text

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _oauth_error(code: int, error: str, description: str) -> JSONResponse:
    # RFC 6749 §5.2 fields plus the 'detail' every CloudMart error carries.
    headers = {"WWW-Authenticate": "Basic"} if code == 401 else None
    return JSONResponse({"error": error, "error_description": description, "detail": description},
                        status_code=code, headers=headers)


def sign_claims(request: Request, sub: str, roles: list[str], scopes: list[str]) -> tuple[str, dict]:
    """An RS256 JWT for ``sub`` signed with the ring's current key, and its claims."""
    s = request.app.state.settings
    now = int(time.time())
    claims = {"iss": s.jwt_issuer, "aud": s.jwt_audience, "sub": sub, "roles": roles, "iat": now,
              "nbf": now, "exp": now + s.token_ttl_s, "jti": uuid.uuid4().hex, "scope": " ".join(scopes),
              # The roles again as one string, for gateways that copy claims into headers
              # (Envoy's claim_to_headers copies strings only): X-User-Roles as /verify sends it.
              "cm_roles": ",".join(roles)}
    key, kid = request.app.state.keyring.signing()
    return jwt.encode(claims, key, algorithm=auth.ALGORITHM, headers={"kid": kid}), claims


def issue_token(request: Request, sub: str, roles: list[str], scope: str | None = None) -> TokenPublic:
    """Sign an RS256 JWT for ``sub`` with ``roles`` and the scopes asked (default: all the roles
    allow). ``ValueError`` for a scope the roles do not allow."""
    scopes = clients.grant_scopes(roles, scope)
    token, _ = sign_claims(request, sub, roles, scopes)
    return TokenPublic(access_token=token, expires_in=request.app.state.settings.token_ttl_s, scope=" ".join(scopes))


def _issue_or_invalid_scope(request: Request, sub: str, roles: list[str], scope: str | None):
    try:
        return issue_token(request, sub, roles, scope)
    except ValueError as exc:
        return _oauth_error(400, "invalid_scope", str(exc))


async def _check_password(request: Request, username: str, password: str) -> list[str] | None:
    s = request.app.state.settings
    if username in DEMO_ACCOUNTS:
        ok = hmac.compare_digest(password.encode(), s.demo_password.encode())
        return DEMO_ACCOUNTS[username] if ok else None
    return await request.app.state.credentials.check(username, password)


def _client_ip(request: Request, x_forwarded_for: str | None) -> str:
    # The gateway sets X-Forwarded-For to the client's address; a direct caller's own header is
    # believed too (the per-account limit still holds for those).
    return (x_forwarded_for or "").split(",")[0].strip() or (request.client.host if request.client else "-")


def _throttled(retry_s: int) -> JSONResponse:
    return JSONResponse({"error": "slow_down", "error_description": "too many failed logins, retry later",
                         "detail": "too many failed logins, retry later"},
                        status_code=status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": str(retry_s)})


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return client_id, secret


@router.post(
    "/token", response_model=TokenPublic,
    summary="Get an access token (OAuth2 client_credentials, authorization_code + PKCE, or the deprecated password grant)",
    responses={400: {"model": Problem, "description": "Missing or invalid parameters"},
               401: {"model": Problem, "description": "Wrong username/password or client secret"},
               429: {"model": Problem, "description": "Too many failed logins for this account or address"},
               503: {"model": Problem, "description": "The credential store cannot be asked now"}},
)
async def token(
    request: Request,
    grant_type: Annotated[Literal["password", "client_credentials", "authorization_code"],
                          Form(description="OAuth2 grant type")],
    username: Annotated[Text | None, Form(max_length=64)] = None,
    password: Annotated[Text | None, Form(max_length=256)] = None,
    client_id: Annotated[Text | None, Form(max_length=64)] = None,
    client_secret: Annotated[Text | None, Form(max_length=256)] = None,
    scope: Annotated[Text | None, Form(max_length=256)] = None,
    code: Annotated[Text | None, Form(max_length=256)] = None,
    redirect_uri: Annotated[Text | None, Form(max_length=512)] = None,
    code_verifier: Annotated[Text | None, Form(max_length=256)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_forwarded_for: Annotated[str | None, Header(include_in_schema=False)] = None,
):
    throttle = request.app.state.login_throttle
    ip = _client_ip(request, x_forwarded_for)
    if grant_type == "authorization_code":
        return await pkce.exchange_code(request, code=code, redirect_uri=redirect_uri, client_id=client_id,
                                        code_verifier=code_verifier)
    if grant_type == "password":
        if not username or not password:
            return _oauth_error(400, "invalid_request", "grant_type=password needs 'username' and 'password'")
        if (retry_s := await throttle.retry_after(username, ip)) is not None:
            return _throttled(retry_s)
        try:
            roles = await _check_password(request, username, password)
        except CredentialStoreUnavailable as exc:
            return JSONResponse({"detail": f"cannot check the password now: {exc}"}, status_code=503,
                                headers={"Retry-After": "1"})
        except HasherBusy:
            return JSONResponse({"detail": "too many logins in progress, retry later"}, status_code=503,
                                headers={"Retry-After": "1"})
        if roles is None:
            await throttle.failed(username, ip)
            return _oauth_error(401, "invalid_grant", "wrong username or password")
        await throttle.succeeded(username)
        return _issue_or_invalid_scope(request, username, roles, scope)
    basic = _basic_credentials(authorization)
    if basic:
        client_id, client_secret = basic
    if not client_id or not client_secret:
        return _oauth_error(400, "invalid_request", "grant_type=client_credentials needs 'client_id' and 'client_secret'")
    account = f"client:{client_id}"
    if (retry_s := await throttle.retry_after(account, ip)) is not None:
        return _throttled(retry_s)
    expected = request.app.state.settings.demo_password
    if client_id not in DEMO_CLIENTS or not hmac.compare_digest(client_secret.encode(), expected.encode()):
        await throttle.failed(account, ip)
        return _oauth_error(401, "invalid_client", "unknown client or wrong client secret")
    await throttle.succeeded(account)
    return _issue_or_invalid_scope(request, account, DEMO_CLIENTS[client_id], scope)


@router.get("/.well-known/jwks.json", response_model=JwksPublic,
            summary="Public keys that verify access tokens: the current key, the next one, and retired keys "
                    "whose tokens may still be unexpired")
async def jwks(request: Request, response: Response) -> dict:
    response.headers["Cache-Control"] = "max-age=5"
    return request.app.state.keyring.jwks()


async def _key_admin(user: Annotated[auth.Principal, Depends(auth.require_scope("keys:rotate"))]) -> auth.Principal:
    if not user.is_admin:                                   # the scope is only granted to admins; belt and braces
        metrics.authz_decision("deny", "forbidden")
        from fastapi import HTTPException
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="admin role required")
    return user


@router.get("/keys", response_model=KeyRingPublic, summary="The signing-key ring (key ids only)")
async def keys(request: Request, _: Annotated[auth.Principal, Depends(_key_admin)]) -> dict:
    return request.app.state.keyring.describe()


@router.post(
    "/keys/rotate", response_model=KeyRingPublic, summary="Rotate the signing key (admin, scope keys:rotate)",
    description="`overlap: true` (planned): the next key, published since the last rotation, starts signing; "
                "the old key stays published until its tokens expire. `overlap: false` (emergency): a new, "
                "never-published key signs at once and the old key leaves the JWKS at once.",
    responses={409: {"model": Problem, "description": "The key ring is read-only here"}},
)
async def rotate(request: Request, body: RotateRequest, _: Annotated[auth.Principal, Depends(_key_admin)]):
    try:
        return request.app.state.keyring.rotate(overlap=body.overlap)
    except RingReadOnly as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)


@router.post(
    "/revoke", response_model=RevokePublic, summary="Revoke an access token (RFC 7009): its jti joins the deny list",
    description="The caller revokes one of its own tokens, or any token with scope `tokens:revoke`. As RFC 7009 "
                "§2.2 says, a token that is already invalid is answered 200 (nothing to revoke).",
    responses={403: {"model": Problem, "description": "The token belongs to someone else"}},
)
async def revoke(request: Request, user: auth.CurrentUser,
                 token: Annotated[Text, Form(max_length=8192, description="The access token to revoke")]):
    s = request.app.state.settings
    try:
        header = jwt.get_unverified_header(token)
        key = request.app.state.keyring.public_key(header.get("kid") or "")
        if key is None or header.get("alg") != auth.ALGORITHM:
            raise jwt.InvalidTokenError("not signed by a published key")
        claims = jwt.decode(token, key, algorithms=[auth.ALGORITHM], audience=s.jwt_audience, issuer=s.jwt_issuer,
                            options={"require": ["exp", "jti", "sub"], "verify_exp": False})
    except jwt.PyJWTError:
        return RevokePublic(revoked=False, listed_for_s=0)
    if claims["sub"] != user.sub and "tokens:revoke" not in auth.token_scopes(user):
        metrics.authz_decision("deny", "forbidden")
        return JSONResponse({"detail": "you may revoke only your own tokens (or need scope tokens:revoke)"},
                            status_code=403)
    listed = await request.app.state.deny_list.revoke(str(claims["jti"]), float(claims["exp"]))
    return RevokePublic(revoked=listed > 0, listed_for_s=listed)


@router.api_route(
    "/verify", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], response_model=VerifyPublic,
    summary="Forward-auth check for the gateway",
    description="Any method (the gateway's check carries the original request's method, not its body). "
                "No token: 200 anonymous. Valid token: 200 with `X-User-Id` and `X-User-Roles` headers. "
                "Invalid token: 401. Over the rate limit (per subject, else per client IP): 429 with `Retry-After`.",
    responses={401: {"model": Problem, "description": "Invalid token"},
               429: {"model": Problem, "description": "Rate limit exceeded"}},
)
async def verify(
    request: Request,
    response: Response,
    user: auth.OptionalUser,
    x_forwarded_for: Annotated[str | None, Header(include_in_schema=False)] = None,
):
    if user is not None:
        key = f"sub:{user.sub}"
    else:
        client_ip = (x_forwarded_for or "").split(",")[0].strip() or (request.client.host if request.client else "-")
        key = f"ip:{client_ip}"
    allowed, retry_s = await request.app.state.rate_limiter.allow(key)
    if not allowed:
        metrics.authz_decision("deny", "rate_limited")
        return JSONResponse({"detail": "rate limit exceeded, slow down"}, status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                            headers={"Retry-After": request.app.state.rate_limiter.retry_after_header(retry_s)})
    if user is None:
        metrics.authz_decision("allow", "anonymous")
        return VerifyPublic(authenticated=False)
    metrics.authz_decision("allow", "token")
    response.headers["X-User-Id"] = user.sub
    response.headers["X-User-Roles"] = ",".join(user.roles)
    return VerifyPublic(authenticated=True, sub=user.sub, roles=list(user.roles))


from services.auth import pkce as _pkce  # noqa: E402  (its routes live under this router's prefix)

router.include_router(_pkce.router)
