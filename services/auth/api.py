"""Auth routes under /api/auth: token, JWKS, forward-auth verify."""

from __future__ import annotations

import base64
import hmac
import time
import uuid
from typing import Annotated, Literal

import jwt
from fastapi import APIRouter, Form, Header, Request, Response, status
from fastapi.responses import JSONResponse

from services.auth.credentials import CredentialStoreUnavailable
from services.auth.models import JwksPublic, Problem, TokenPublic, VerifyPublic
from services.common import auth
from services.common.demo import DEMO_ACCOUNTS, DEMO_CLIENTS
from services.common.passwords import HasherBusy
from services.common.types import Text

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _oauth_error(code: int, error: str, description: str) -> JSONResponse:
    # RFC 6749 §5.2 fields plus the 'detail' every CloudMart error carries.
    headers = {"WWW-Authenticate": "Basic"} if code == 401 else None
    return JSONResponse({"error": error, "error_description": description, "detail": description},
                        status_code=code, headers=headers)


def issue_token(request: Request, sub: str, roles: list[str]) -> TokenPublic:
    """Sign an RS256 JWT for ``sub`` with ``roles``."""
    s = request.app.state.settings
    now = int(time.time())
    claims = {"iss": s.jwt_issuer, "aud": s.jwt_audience, "sub": sub, "roles": roles, "iat": now,
              "nbf": now, "exp": now + s.token_ttl_s, "jti": uuid.uuid4().hex, "scope": " ".join(roles)}
    token = jwt.encode(claims, request.app.state.signing_key, algorithm=auth.ALGORITHM,
                       headers={"kid": request.app.state.key_id})
    return TokenPublic(access_token=token, expires_in=s.token_ttl_s, scope=" ".join(roles))


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
    "/token", response_model=TokenPublic, summary="Get an access token (OAuth2 password or client_credentials)",
    responses={400: {"model": Problem, "description": "Missing or invalid parameters"},
               401: {"model": Problem, "description": "Wrong username/password or client secret"},
               429: {"model": Problem, "description": "Too many failed logins for this account or address"},
               503: {"model": Problem, "description": "The credential store cannot be asked now"}},
)
async def token(
    request: Request,
    grant_type: Annotated[Literal["password", "client_credentials"], Form(description="OAuth2 grant type")],
    username: Annotated[Text | None, Form(max_length=64)] = None,
    password: Annotated[Text | None, Form(max_length=256)] = None,
    client_id: Annotated[Text | None, Form(max_length=64)] = None,
    client_secret: Annotated[Text | None, Form(max_length=256)] = None,
    scope: Annotated[Text | None, Form(max_length=256)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_forwarded_for: Annotated[str | None, Header(include_in_schema=False)] = None,
):
    throttle = request.app.state.login_throttle
    ip = _client_ip(request, x_forwarded_for)
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
        return issue_token(request, username, roles)
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
    return issue_token(request, account, DEMO_CLIENTS[client_id])


@router.get("/.well-known/jwks.json", response_model=JwksPublic, summary="Public keys that sign access tokens")
async def jwks(request: Request) -> dict:
    return request.app.state.jwks


@router.get(
    "/verify", response_model=VerifyPublic, summary="Forward-auth check for the gateway",
    description="No token: 200 anonymous. Valid token: 200 with `X-User-Id` and `X-User-Roles` headers. "
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
        return JSONResponse({"detail": "rate limit exceeded, slow down"}, status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                            headers={"Retry-After": request.app.state.rate_limiter.retry_after_header(retry_s)})
    if user is None:
        return VerifyPublic(authenticated=False)
    response.headers["X-User-Id"] = user.sub
    response.headers["X-User-Roles"] = ",".join(user.roles)
    return VerifyPublic(authenticated=True, sub=user.sub, roles=list(user.roles))
