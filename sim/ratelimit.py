"""Rate limiting as the targets run it.

* :class:`TokenBucket` — a continuously refilled bucket: the auth service's limiter (CloudMart's
  local target).
* :class:`KongRateLimiting` — Kong's ``rate-limiting`` plugin with ``policy: local``: **fixed
  windows** aligned to the clock (``second``, ``minute``, ``hour`` limits), counted by every Kong
  node on its own, so N nodes admit N× the limit. Source: Kong docs, "Rate Limiting plugin".
* :class:`EnvoyLocalRateLimit` — Envoy's local rate limit filter: a bucket of ``max_tokens``
  refilled with ``tokens_per_fill`` every ``fill_interval_s`` (in steps, by a timer), one per
  proxy. Source: Envoy docs, "Local rate limit" (``envoy.filters.http.local_ratelimit``).

All have ``new_state()`` whose ``allow(now_s)`` admits or refuses one request; requests are spread
round robin over the nodes/proxies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from ._validate import check_int, check_positive

__all__ = ["TokenBucket", "TokenBucketState", "KongRateLimiting", "EnvoyLocalRateLimit", "RateLimitResult",
           "simulate_rate_limit", "RATE_LIMITERS"]


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
class KongRateLimiting:
    """Kong ``rate-limiting`` (``policy: local``): at most ``second`` / ``minute`` / ``hour``
    requests per clock-aligned window, per Kong node; ``nodes`` Kong replicas share the traffic."""

    second: int | None = None
    minute: int | None = None
    hour: int | None = None
    nodes: int = 1

    def __post_init__(self):
        if self.second is None and self.minute is None and self.hour is None:
            raise ValueError("second: got None with minute and hour None; valid: set at least one limit")
        for key in ("second", "minute", "hour"):
            if getattr(self, key) is not None:
                check_int(key, getattr(self, key), 0)
        check_int("nodes", self.nodes)

    def new_state(self) -> "_KongState":
        windows = [(w, lim) for w, lim in ((1.0, self.second), (60.0, self.minute), (3600.0, self.hour))
                   if lim is not None]
        return _KongState(windows, self.nodes)


class _KongState:
    __slots__ = ("windows", "counters", "nodes", "next_node", "admitted", "rejected")

    def __init__(self, windows, nodes):
        self.windows = windows
        self.counters = [[(-1, 0) for _ in windows] for _ in range(nodes)]  # (window index, count)
        self.nodes = nodes
        self.next_node = 0
        self.admitted = 0
        self.rejected = 0

    def allow(self, now: float) -> bool:
        node = self.next_node
        self.next_node = (node + 1) % self.nodes
        counters = self.counters[node]
        current = []
        for i, (size, limit) in enumerate(self.windows):
            index = int(now // size)
            idx, count = counters[i]
            count = count if idx == index else 0
            if count >= limit:
                self.rejected += 1
                return False
            current.append((index, count))
        for i, (index, count) in enumerate(current):
            counters[i] = (index, count + 1)
        self.admitted += 1
        return True


@dataclass(frozen=True)
class EnvoyLocalRateLimit:
    """Envoy's local rate limit: ``token_bucket`` with ``max_tokens``, ``tokens_per_fill`` and
    ``fill_interval_s``; starts full; ``proxies`` independent buckets (one per Envoy)."""

    max_tokens: int
    tokens_per_fill: int = 1
    fill_interval_s: float = 1.0
    proxies: int = 1

    def __post_init__(self):
        check_int("max_tokens", self.max_tokens)
        check_int("tokens_per_fill", self.tokens_per_fill)
        check_positive("fill_interval_s", self.fill_interval_s)
        check_int("proxies", self.proxies)

    def new_state(self) -> "_EnvoyState":
        return _EnvoyState(self)


class _EnvoyState:
    __slots__ = ("spec", "tokens", "fills", "next_proxy", "admitted", "rejected")

    def __init__(self, spec: EnvoyLocalRateLimit):
        self.spec = spec
        self.tokens = [spec.max_tokens] * spec.proxies
        self.fills = [0] * spec.proxies  # fill timer ticks already applied
        self.next_proxy = 0
        self.admitted = 0
        self.rejected = 0

    def allow(self, now: float) -> bool:
        spec = self.spec
        p = self.next_proxy
        self.next_proxy = (p + 1) % spec.proxies
        ticks = int(now // spec.fill_interval_s + 1e-9)
        if ticks > self.fills[p]:  # the fill timer fired (ticks − fills) times since
            self.tokens[p] = min(spec.max_tokens, self.tokens[p] + (ticks - self.fills[p]) * spec.tokens_per_fill)
            self.fills[p] = ticks
        if self.tokens[p] >= 1:
            self.tokens[p] -= 1
            self.admitted += 1
            return True
        self.rejected += 1
        return False


RATE_LIMITERS = (TokenBucket, KongRateLimiting, EnvoyLocalRateLimit)


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
    arrival_rate_per_s: float, bucket, duration_s: float = 600.0, seed: int = 0
) -> RateLimitResult:
    """Poisson arrivals at ``arrival_rate_per_s`` for ``duration_s`` (from idle) against a
    limiter: a :class:`TokenBucket`, :class:`KongRateLimiting` or :class:`EnvoyLocalRateLimit`."""
    check_positive("arrival_rate_per_s", arrival_rate_per_s)
    check_positive("duration_s", duration_s)
    if not isinstance(bucket, RATE_LIMITERS):
        raise ValueError(f"bucket: got {bucket!r}; valid: a sim.TokenBucket, sim.KongRateLimiting or sim.EnvoyLocalRateLimit")
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
