"""Token-bucket rate limiting (the gateway's limiter, done in the auth service in CloudMart)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from ._validate import check_int, check_positive

__all__ = ["TokenBucket", "TokenBucketState", "RateLimitResult", "simulate_rate_limit"]


@dataclass(frozen=True)
class TokenBucket:
    """A bucket of ``burst`` tokens refilled at ``rate_per_s``; a request takes one token."""

    rate_per_s: float
    burst: int = 10

    def __post_init__(self):
        check_positive("rate_per_s", self.rate_per_s)
        check_int("burst", self.burst)

    def new_state(self) -> "TokenBucketState":
        return TokenBucketState(self.rate_per_s, self.burst)


class TokenBucketState:
    """A running bucket; starts full. ``allow(now_s)`` takes a token or refuses."""

    __slots__ = ("rate", "burst", "tokens", "last", "admitted", "rejected")

    def __init__(self, rate_per_s: float, burst: int):
        self.rate = rate_per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = 0.0
        self.admitted = 0
        self.rejected = 0

    def allow(self, now: float) -> bool:
        tokens = self.tokens + (now - self.last) * self.rate
        self.tokens = tokens if tokens < self.burst else self.burst
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.admitted += 1
            return True
        self.rejected += 1
        return False

    def retry_after_s(self) -> float:
        """Seconds until the next token (what a 429's ``Retry-After`` would say)."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


@dataclass(frozen=True)
class RateLimitResult:
    """Counts and rates of one rate-limiter run."""

    offered: int
    admitted: int
    rejected: int
    duration_s: float

    @property
    def admitted_rate_per_s(self) -> float:
        return self.admitted / self.duration_s

    @property
    def rejected_fraction(self) -> float:
        return self.rejected / self.offered if self.offered else 0.0


def simulate_rate_limit(
    arrival_rate_per_s: float, bucket: TokenBucket, duration_s: float = 600.0, seed: int = 0
) -> RateLimitResult:
    """Poisson arrivals at ``arrival_rate_per_s`` for ``duration_s`` against a token bucket."""
    check_positive("arrival_rate_per_s", arrival_rate_per_s)
    check_positive("duration_s", duration_s)
    if not isinstance(bucket, TokenBucket):
        raise ValueError(f"bucket: got {bucket!r}; valid: a sim.TokenBucket")
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    state = bucket.new_state()
    counts = {"offered": 0}

    def client(env):
        """Open-loop Poisson client that ignores 429s."""
        while True:
            gaps = rng.exponential(1.0 / arrival_rate_per_s, 4096).tolist()
            for gap in gaps:
                yield env.timeout(gap)
                counts["offered"] += 1
                state.allow(env.now)

    env.process(client(env))
    env.run(until=duration_s)
    return RateLimitResult(counts["offered"], state.admitted, state.rejected, duration_s)
