"""A token bucket per key in Redis, refilled continuously, updated atomically by a Lua script."""

from __future__ import annotations

import math

import redis.asyncio as aioredis

# KEYS[1] bucket; ARGV: rate per second, burst. Uses the server clock, so replicas agree.
_TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(retry)}
"""


class TokenBucket:
    """``allow(key)`` → (allowed, retry_after_s) at ``rate_per_s`` with bursts up to ``burst``."""

    def __init__(self, redis: aioredis.Redis, rate_per_s: float, burst: float):
        if rate_per_s <= 0:
            raise ValueError(f"RATE_LIMIT_RPS={rate_per_s} must be > 0")
        if burst < 1:
            raise ValueError(f"RATE_LIMIT_BURST={burst} must be >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._script = redis.register_script(_TOKEN_BUCKET_LUA)

    async def allow(self, key: str) -> tuple[bool, float]:
        allowed, retry = await self._script(keys=[f"ratelimit:{key}"], args=[self.rate_per_s, self.burst])
        return bool(int(allowed)), float(retry)

    @staticmethod
    def retry_after_header(retry_s: float) -> str:
        return str(max(1, math.ceil(retry_s)))
