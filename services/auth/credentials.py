"""Where auth checks a registered customer's password: the user service, which keeps the
credentials in PostgreSQL. Auth holds no copy (neither in Redis nor from events), so no cache
or message can grant a login or a role.

The call carries a short-lived service token signed with auth's own key (audience
``cloudmart-internal``), which only the user service's internal route accepts. The PBKDF2 work
happens there, in its hashing pool: auth's event loop, which also answers the gateway's
``/api/auth/verify`` for every request, only awaits an HTTP answer.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from services.common import auth, tracing


class CredentialStoreUnavailable(Exception):
    """The user service did not answer usefully; the login can be retried."""


class UserServiceCredentials:
    """``check(username, password)`` → roles or None, asked of ``USER_URL``'s internal route."""

    def __init__(self, user_url: str | None, keyring, issuer: str, timeout_s: float = 5.0):
        self.user_url = user_url
        self.keyring = keyring                  # services.auth.keyring.KeyRing: signs with its current key
        self.issuer = issuer
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.session: aiohttp.ClientSession | None = None
        self._token: tuple[str, float, str] | None = None

    def _service_token(self) -> str:
        now = time.monotonic()
        key, kid = self.keyring.signing()
        if self._token is None or self._token[1] < now or self._token[2] != kid:
            self._token = (auth.service_token(key, kid, self.issuer, "auth", ttl_s=60), now + 30, kid)
        return self._token[0]

    async def check(self, username: str, password: str) -> list[str] | None:
        if not self.user_url:
            raise CredentialStoreUnavailable("USER_URL is not set: registered customers cannot log in")
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self._service_token()}", "traceparent": tracing.traceparent()}
        try:
            async with self.session.post(f"{self.user_url}/internal/credentials/check", headers=headers,
                                         json={"username": username, "password": password}) as response:
                if response.status == 200:
                    roles = (await response.json()).get("roles")
                    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                        raise CredentialStoreUnavailable("user service answered without a roles list")
                    return roles
                if response.status in (401, 422):
                    return None
                raise CredentialStoreUnavailable(f"user service answered {response.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise CredentialStoreUnavailable(f"user service unreachable: {exc!r}") from exc

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class DatabaseCredentials:
    """The same check against a credentials table in this process's own database (the monolith)."""

    def __init__(self, db):
        self.db = db

    async def check(self, username: str, password: str) -> list[str] | None:
        from services.user import credentials

        async with self.db.sessions() as session:
            return await credentials.check(session, username, password)

    async def close(self) -> None:
        return None
