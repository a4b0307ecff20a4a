"""The ``jti`` deny list: a revoked token's id in Redis until the token would have expired anyway.

A JWT is valid until ``exp`` wherever it is checked offline; revoking one needs a place every
check consults. Here that is auth: the gateway's forward-auth (``/api/auth/verify``) and auth's own
routes refuse a listed ``jti``. A service reached directly (not through the gateway) does not
consult the list: its exposure is the token's remaining lifetime (see ``sim.security``).
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from services.common import auth

PREFIX = "oauth:revoked:"


class DenyList:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def revoke(self, jti: str, exp: float) -> int:
        """List ``jti`` until ``exp``; returns the seconds it stays listed (0: already expired)."""
        ttl = int(exp - time.time()) + 1
        if ttl <= 0:
            return 0
        await self.redis.set(PREFIX + jti, "1", ex=ttl)
        return ttl

    async def is_revoked(self, jti: str) -> bool:
        return bool(await self.redis.exists(PREFIX + jti))


class RevocationAwareVerifier(auth.Verifier):
    """``auth.Verifier`` that also refuses tokens whose ``jti`` is on the deny list (or missing:
    a token without an id could never be revoked)."""

    def __init__(self, keys, issuer: str, audience: str, deny_list: DenyList):
        super().__init__(keys, issuer, audience)
        self.deny_list = deny_list

    async def verify(self, token: str, audience: str | None = None) -> auth.Principal:
        principal = await super().verify(token, audience)
        jti = principal.claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise auth.InvalidToken("token has no id (jti), so it could not be revoked: refused")
        if await self.deny_list.is_revoked(jti):
            raise auth.InvalidToken("token revoked")
        return principal
