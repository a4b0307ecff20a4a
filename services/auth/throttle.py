"""Login throttling: failed logins counted per account and per client IP in Redis.

After ``max_per_account`` failures for one username, or ``max_per_ip`` from one address, within
``window_s``, further attempts get 429 with ``Retry-After`` (the seconds until the window ends)
without checking the password at all, so guessing costs the guesser time and the server no
hashing. A successful login clears the account's count. Counters are fixed windows (created
with their expiry at the first failure, then ``INCR``), shared by every auth replica.
"""

from __future__ import annotations

import hashlib
import math

import redis.asyncio as aioredis


def _key(kind: str, value: str) -> str:
    # Hashed: a username or address is never a Redis key name verbatim (any length, any bytes).
    return f"login:fail:{kind}:{hashlib.sha256(value.encode('utf-8', 'replace')).hexdigest()[:32]}"


class LoginThrottle:
    def __init__(self, redis: aioredis.Redis, max_per_account: int, max_per_ip: int, window_s: int):
        if max_per_account < 1 or max_per_ip < 1 or window_s < 1:
            raise ValueError("login limits and window must be >= 1")
        self.redis = redis
        self.limits = {"account": max_per_account, "ip": max_per_ip}
        self.window_s = window_s

    async def retry_after(self, account: str, ip: str) -> int | None:
        """Seconds to wait if ``account`` or ``ip`` is over its limit, else None."""
        keys = {"account": _key("account", account), "ip": _key("ip", ip)}
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys.values():
                pipe.get(key)
                pipe.pttl(key)
            values = await pipe.execute()
        wait_ms = 0
        for i, kind in enumerate(keys):
            count, pttl = values[2 * i], values[2 * i + 1]
            if count is not None and int(count) >= self.limits[kind]:
                wait_ms = max(wait_ms, pttl if pttl and pttl > 0 else self.window_s * 1000)
        return max(1, math.ceil(wait_ms / 1000)) if wait_ms else None

    async def failed(self, account: str, ip: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in (_key("account", account), _key("ip", ip)):
                pipe.set(key, 0, ex=self.window_s, nx=True)  # the window starts at the first failure
                pipe.incr(key)
            await pipe.execute()

    async def succeeded(self, account: str) -> None:
        await self.redis.delete(_key("account", account))
