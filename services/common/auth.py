"""JWT checks in ONE shared dependency: ``CurrentUser``, ``OptionalUser``, ``AdminUser``.

Tokens are RS256 JWTs from the auth service with ``iss``, ``aud``, ``exp``, ``sub`` and
``roles``. Only RS256 is accepted (no ``none``, no HS256 signed with the public key). Keys
come from the auth service's JWKS (``AUTH_JWKS_URL``, fetched and cached); without that URL,
from the key file the auth service keeps in the state folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.common import metrics

ALGORITHM = "RS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject and roles."""

    sub: str
    roles: tuple[str, ...] = ()
    claims: dict = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


# -- signing keys (owned by the auth service, kept in the state folder) ----------------------

def key_path(state_dir: Path) -> Path:
    return Path(state_dir) / "auth" / "jwt-signing-key.pem"


def load_or_create_signing_key(state_dir: Path) -> rsa.RSAPrivateKey:
    """The RSA signing key, generated once and shared by every auth replica.

    Written atomically: a new key goes to a temp file, then is hard-linked into place, which
    fails if another replica won the race; then everyone reads the winner's key.
    """
    path = key_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def key_id(public_key) -> str:
    """A stable key id: the RFC 7638 thumbprint of the public JWK."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    import base64
    import hashlib

    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def jwks_for(public_key) -> dict:
    """The JWKS document publishing ``public_key``."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
    jwk.update(kid=key_id(public_key), use="sig", alg=ALGORITHM)
    return {"keys": [jwk]}


# -- verification ------------------------------------------------------------------------------

class InvalidToken(Exception):
    """The token is not acceptable; the message says why."""


class KeysUnavailable(Exception):
    """The signing keys cannot be fetched (the auth service is down): not the caller's fault."""


def parse_jwks(document) -> tuple[dict[str, object], set[str]]:
    """The RS256 signing keys of a JWKS document by ``kid``, and the ``kid`` values it publishes
    more than once (ambiguous: no key is trusted under such a ``kid``). ``ValueError`` if the
    document is not a JWKS at all."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is a JSON object with a 'keys' list")
    counts: dict[str, int] = {}
    for jwk in document["keys"]:
        if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
            counts[jwk["kid"]] = counts.get(jwk["kid"], 0) + 1
    ambiguous = {kid for kid, n in counts.items() if n > 1}
    keys: dict[str, object] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kid") in ambiguous or not jwk.get("kid"):
            continue
        if jwk.get("kty") != "RSA" or jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
            continue
        try:
            keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue                                       # one unusable key does not spoil the set
    return keys, ambiguous


class KeySource:
    """Public keys by ``kid``, from a JWKS URL (cached, refetched at most every 5 s on a miss;
    each fetch replaces the cached set, so a key the JWKS stops publishing is no longer trusted)."""

    def __init__(self, jwks_url: str | None, state_dir: Path, local_key=None):
        self.jwks_url = jwks_url
        self.state_dir = Path(state_dir)
        self._local: dict[str, object] = {} if local_key is None else {key_id(local_key): local_key}
        self.keys: dict[str, object] = dict(self._local)
        self.ambiguous: set[str] = set()
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    def _load_file(self) -> None:
        path = key_path(self.state_dir)
        if path.exists():
            public = serialization.load_pem_private_key(path.read_bytes(), password=None).public_key()
            self.keys[key_id(public)] = public

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < 5.0:
                return
            self._fetched_at = time.monotonic()
            if not self.jwks_url:
                self._load_file()
                return
            try:
                async with httpx.AsyncClient(timeout=3.0) as client:
                    response = await client.get(self.jwks_url)
                    response.raise_for_status()
                    keys, ambiguous = parse_jwks(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                self._fetched_at = time.monotonic() - 4.0  # retry after a second, not on every request
                raise KeysUnavailable(f"cannot fetch signing keys: {exc}") from exc
            # The JWKS is the whole truth: a key it no longer publishes (rotated out) is dropped.
            self.keys = {**self._local, **keys}
            self.ambiguous = ambiguous

    async def get(self, kid: str):
        if kid not in self.keys:
            await self._refresh()
        if kid in self.ambiguous:
            raise InvalidToken(f"key id {kid[:64]!r} is published more than once in the JWKS: ambiguous, refused")
        if kid not in self.keys:
            raise InvalidToken("token signed by an unknown key")
        return self.keys[kid]


class Verifier:
    """Checks a bearer token: RS256 only, known key, issuer, audience, expiry, subject."""

    def __init__(self, keys: KeySource, issuer: str, audience: str):
        self.keys = keys
        self.issuer = issuer
        self.audience = audience

    async def verify(self, token: str, audience: str | None = None) -> Principal:
        """The token's principal; ``audience`` (default: the public API's) must be in ``aud``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted; only {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token header has no key id (kid)")
        key = await self.keys.get(kid)
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=audience or self.audience,
                                issuer=self.issuer,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidToken("claim 'roles' must be a list of strings")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise InvalidToken("claim 'sub' must be a non-empty string")
        return Principal(sub=claims["sub"], roles=tuple(roles), claims=claims)


_verifier: dict[str, Verifier] = {}


def configure(verifier: Verifier) -> None:
    """Install the verifier the dependencies below use (done once by the app factory)."""
    _verifier["default"] = verifier


def get_verifier() -> Verifier:
    return _verifier["default"]


bearer = HTTPBearer(auto_error=False, description="RS256 JWT from POST /api/auth/token")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def optional_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal | None:
    """The caller, or None without a token; an invalid token is a 401."""
    if credentials is None:
        return None
    try:
        return await get_verifier().verify(credentials.credentials)
    except InvalidToken as exc:
        metrics.authz_decision("deny", "invalid_token")
        raise _unauthorized(f"invalid token: {exc}") from None
    except KeysUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc), headers={"Retry-After": "1"}) from None


async def current_user(user: Annotated[Principal | None, Depends(optional_user)]) -> Principal:
    """The authenticated caller; 401 without a valid token."""
    if user is None:
        metrics.authz_decision("deny", "unauthenticated")
        raise _unauthorized("not authenticated: send 'Authorization: Bearer <token>'")
    return user


async def admin_user(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    """The caller, who must have the admin role (403 otherwise)."""
    if not user.is_admin:
        metrics.authz_decision("deny", "forbidden")
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="admin role required")
    metrics.authz_decision("allow", "token")
    return user


def token_scopes(user: Principal) -> set[str]:
    """The scopes a token grants: its ``scope`` claim, space-separated (RFC 8693 §4.2, RFC 9068)."""
    scope = user.claims.get("scope", "")
    return set(scope.split()) if isinstance(scope, str) else set()


def require_scope(*needed: str):
    """Dependency: the caller's token must grant every scope in ``needed`` (403 otherwise, with
    ``WWW-Authenticate: Bearer error="insufficient_scope"`` as RFC 6750 §3.1 says)."""
    if not needed or not all(isinstance(s, str) and s and " " not in s for s in needed):
        raise ValueError(f"require_scope needs one or more scope names without spaces, got {needed!r}")

    async def dependency(user: Annotated[Principal, Depends(current_user)]) -> Principal:
        missing = [s for s in needed if s not in token_scopes(user)]
        if missing:
            metrics.authz_decision("deny", "insufficient_scope")
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"token lacks scope: {' '.join(missing)}",
                                headers={"WWW-Authenticate":
                                         f'Bearer error="insufficient_scope", scope="{" ".join(needed)}"'})
        metrics.authz_decision("allow", "token")
        return user

    return dependency


#: Audience of the tokens one service presents to another (never accepted by public routes,
#: whose audience is ``JWT_AUDIENCE``; a customer's token is never accepted by internal routes).
SERVICE_AUDIENCE = "cloudmart-internal"


def service_token(signing_key, kid: str, issuer: str, service: str, ttl_s: int = 60) -> str:
    """A short-lived token by which ``service`` (the key's owner, auth) calls an internal route."""
    now = int(time.time())
    claims = {"iss": issuer, "aud": SERVICE_AUDIENCE, "sub": f"service:{service}", "roles": ["service"],
              "iat": now, "nbf": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM, headers={"kid": kid})


def service_caller(*allowed: str):
    """Dependency: the caller must present a service token of one of the ``allowed`` services."""

    async def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None:
            raise _unauthorized("not authenticated: internal route, service token required")
        try:
            principal = await get_verifier().verify(credentials.credentials, audience=SERVICE_AUDIENCE)
        except InvalidToken as exc:
            raise _unauthorized(f"invalid service token: {exc}") from None
        except KeysUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc),
                                headers={"Retry-After": "1"}) from None
        if principal.sub not in {f"service:{name}" for name in allowed}:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"{principal.sub!r} may not call this route")
        return principal

    return dependency


OptionalUser = Annotated[Principal | None, Depends(optional_user)]
CurrentUser = Annotated[Principal, Depends(current_user)]
AdminUser = Annotated[Principal, Depends(admin_user)]
