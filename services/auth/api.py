"""Auth routes under /api/auth: token, JWKS, forward-auth verify."""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from typing import Annotated, Literal

import jwt
from fastapi import APIRouter, Form, Header, Request, Response, status
from fastapi.responses import JSONResponse

from services.auth.events import credentials_key
from services.auth.models import JwksPublic, Problem, TokenPublic, VerifyPublic
from services.common import auth
from services.common.demo import DEMO_ACCOUNTS, DEMO_CLIENTS
from services.common.passwords import verify_password
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
    stored = await request.app.state.redis.hgetall(credentials_key(username))
    if stored and verify_password(password, stored.get("password_hash", "")):
        return json.loads(stored.get("roles") or '["customer"]')
    return None


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
               401: {"model": Problem, "description": "Wrong username/password or client secret"}},
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
):
    if grant_type == "password":
        if not username or not password:
            return _oauth_error(400, "invalid_request", "grant_type=password needs 'username' and 'password'")
        roles = await _check_password(request, username, password)
        if roles is None:
            return _oauth_error(401, "invalid_grant", "wrong username or password")
        return issue_token(request, username, roles)
    basic = _basic_credentials(authorization)
    if basic:
        client_id, client_secret = basic
    if not client_id or not client_secret:
        return _oauth_error(400, "invalid_request", "grant_type=client_credentials needs 'client_id' and 'client_secret'")
    expected = request.app.state.settings.demo_password
    if client_id not in DEMO_CLIENTS or not hmac.compare_digest(client_secret.encode(), expected.encode()):
        return _oauth_error(401, "invalid_client", "unknown client or wrong client secret")
    return issue_token(request, f"client:{client_id}", DEMO_CLIENTS[client_id])


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
