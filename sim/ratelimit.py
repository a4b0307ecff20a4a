"""Rate limiting as the targets run it.

* :class:`TokenBucket` — a continuously refilled bucket: the auth service's limiter (CloudMart's
  local target).
* :class:`KongRateLimiting` — Kong's ``rate-limiting`` plugin with ``policy: local``: **fixed
  windows** aligned to the clock (``second``, ``minute``, ``hour`` limits), counted by every Kong
  node on its own, so N nodes admit N× the limit. Source: Kong docs, "Rate Limiting plugin".
* :class:`EnvoyLocalRateLimit` — Envoy's local rate limit filter: a bucket of ``max_tokens``
  refilled with ``tokens_per_fill`` every ``fill_interval_s`` (in steps, by a timer), one per
  proxy. Source: Envoy docs, "Local rate limit" (``envoy.filters.http.local_ratelimit``).

* :class:`FixedWindow` — the generic fixed-window counter (``limit`` per clock-aligned window of
  ``window_s``): what Kong's ``local`` policy and Envoy's bucket refilled whole each window do.
  Two full windows back to back let ``2 × limit`` requests through in one sliding window that
  straddles the boundary (:func:`worst_sliding_window_count`,
  :func:`fixed_window_worst_sliding_count`); a token bucket of burst ``b`` and rate ``r`` lets at
  most ``b + r·W`` through in any window of length ``W`` (:func:`token_bucket_worst_sliding_count`).

All have ``new_state()`` whose ``allow(now_s)`` admits or refuses one request; requests are spread
round robin over the nodes/proxies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from ._validate import check_int, check_positive

__all__ = ["TokenBucket", "TokenBucketState", "FixedWindow", "KongRateLimiting", "EnvoyLocalRateLimit", "RateLimitResult",
           "simulate_rate_limit", "RATE_LIMITERS",
           "admitted_times", "worst_sliding_window_count", "fixed_window_worst_sliding_count",
           "token_bucket_worst_sliding_count", "fixed_window_admitted_fraction", "compare_limiters",
           "max_admitted_in_window"]


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
class FixedWindow:
    """At most ``limit`` requests per clock-aligned window ``[k·window_s, (k+1)·window_s)`` on each of
    ``nodes`` counters (requests spread round robin over them, as N gateway replicas with a local
    counter each: N× the limit in total)."""

    limit: int
    window_s: float = 1.0
    nodes: int = 1

    def __post_init__(self):
        check_int("limit", self.limit, 0)
        check_positive("window_s", self.window_s)
        check_int("nodes", self.nodes)

    def new_state(self) -> "_KongState":
        return _KongState([(float(self.window_s), self.limit)], self.nodes)


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


RATE_LIMITERS = (TokenBucket, FixedWindow, KongRateLimiting, EnvoyLocalRateLimit)


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
    limiter: a :class:`TokenBucket`, :class:`FixedWindow`, :class:`KongRateLimiting` or
    :class:`EnvoyLocalRateLimit`."""
    check_positive("arrival_rate_per_s", arrival_rate_per_s)
    check_positive("duration_s", duration_s)
    if not isinstance(bucket, RATE_LIMITERS):
        raise ValueError(f"bucket: got {bucket!r}; valid: a sim.TokenBucket, sim.FixedWindow, sim.KongRateLimiting or sim.EnvoyLocalRateLimit")
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


def _check_limiter(bucket) -> None:
    if not isinstance(bucket, RATE_LIMITERS):
        raise ValueError(f"bucket: got {bucket!r}; valid: a sim.TokenBucket, sim.FixedWindow, sim.KongRateLimiting "
                         "or sim.EnvoyLocalRateLimit")


def admitted_times(arrival_times_s, bucket) -> np.ndarray:
    """The arrival times (s, increasing) that ``bucket`` admits, in order."""
    _check_limiter(bucket)
    times = np.asarray(arrival_times_s, dtype=float)
    if times.ndim != 1 or (times.size > 1 and np.any(np.diff(times) < 0)) or (times.size and times[0] < 0):
        raise ValueError("arrival_times_s: got unsorted, negative or non-1-D times; valid: increasing times >= 0")
    state = bucket.new_state()
    allow = state.allow
    return np.array([t for t in times.tolist() if allow(t)], dtype=float)


def worst_sliding_window_count(times_s, window_s: float = 1.0) -> int:
    """The most events in any window ``[t, t + window_s)`` (a sliding window, any start)."""
    check_positive("window_s", window_s)
    t = np.asarray(times_s, dtype=float)
    if t.size == 0:
        return 0
    # the best window starts at an event: count the events in [t_i, t_i + W)
    ends = np.searchsorted(t, t + window_s, side="left")
    return int((ends - np.arange(t.size)).max())


def fixed_window_worst_sliding_count(limit: int, nodes: int = 1) -> int:
    """Closed form: a fixed window admits at most ``2 × limit`` (per node) in one sliding window —
    ``limit`` at the end of window k and ``limit`` at the start of window k + 1."""
    return 2 * check_int("limit", limit, 0) * check_int("nodes", nodes)


def token_bucket_worst_sliding_count(rate_per_s: float, burst: int, window_s: float = 1.0) -> float:
    """Closed form: a token bucket admits at most ``burst + rate·W`` in any window of length ``W``
    (a full bucket plus what refills meanwhile)."""
    return check_int("burst", burst) + check_positive("rate_per_s", rate_per_s) * check_positive("window_s", window_s)


def fixed_window_admitted_fraction(arrival_rate_per_s: float, limit: int, window_s: float = 1.0) -> float:
    """Closed form for Poisson arrivals at a fixed window: ``E[min(N, L)] / E[N]`` with
    ``N ~ Poisson(λW)`` — the share of requests admitted."""
    from scipy import stats

    lam = check_positive("arrival_rate_per_s", arrival_rate_per_s) * check_positive("window_s", window_s)
    limit = check_int("limit", limit, 0)
    k = np.arange(limit)
    # E[min(N, L)] = sum_{k<L} P(N > k)
    return float(stats.poisson.sf(k, lam).sum() / lam)


def compare_limiters(limit_per_s: int = 10, multiples=(0.5, 1.0, 1.5, 2.0, 3.0), burst: int | None = None,
                     duration_s: float = 300.0, seed: int = 0):
    """Token bucket (rate = limit, burst = ``burst`` or the limit) against a 1 s fixed window of
    the same limit, under Poisson load at ``multiples`` × the limit: one row per load with the
    admitted share, the fixed window's closed form and each limiter's worst sliding-second count."""
    import pandas as pd

    check_int("limit_per_s", limit_per_s)
    burst = limit_per_s if burst is None else check_int("burst", burst)
    rows = []
    for i, m in enumerate(multiples):
        rate = check_positive(f"multiples[{i}]", m) * limit_per_s
        rng = np.random.default_rng([seed, i])
        arrivals = np.cumsum(rng.exponential(1.0 / rate, int(rate * duration_s * 1.2) + 50))
        arrivals = arrivals[arrivals < duration_s]
        tb = admitted_times(arrivals, TokenBucket(limit_per_s, burst))
        fw = admitted_times(arrivals, FixedWindow(limit_per_s, 1.0))
        rows.append({"load_multiple": float(m), "offered": int(arrivals.size),
                     "token_bucket_admitted": tb.size / arrivals.size,
                     "fixed_window_admitted": fw.size / arrivals.size,
                     "fixed_window_theory": fixed_window_admitted_fraction(rate, limit_per_s),
                     "token_bucket_worst_1s": worst_sliding_window_count(tb),
                     "fixed_window_worst_1s": worst_sliding_window_count(fw),
                     "token_bucket_bound_1s": token_bucket_worst_sliding_count(limit_per_s, burst),
                     "fixed_window_bound_1s": fixed_window_worst_sliding_count(limit_per_s)})
    return pd.DataFrame(rows).set_index("load_multiple")


def max_admitted_in_window(arrival_times_s, bucket, window_s: float = 1.0) -> int:
    """The most requests ``bucket`` admits from these arrivals in any sliding window of ``window_s``."""
    return worst_sliding_window_count(admitted_times(arrival_times_s, bucket), window_s)
