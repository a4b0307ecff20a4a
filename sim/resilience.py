"""Resilience policies: retries with backoff, jitter and a budget; circuit breakers; bulkheads;
and the mesh's mechanisms — Envoy outlier detection per host and connection pools that queue —
next to an application breaker with resilience4j's semantics.

Each policy is a frozen **spec** (part of a scenario, printable and comparable) that makes a
fresh mutable **state** for every run with ``.new_state()``. The states are plain objects with
``__slots__`` so that a SimPy model can consult them on every call cheaply. Times given to the
states are in seconds (the model's time unit); the specs speak milliseconds where a person would.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ._validate import check_fraction, check_int, check_nonnegative, check_positive

__all__ = [
    "Retry",
    "RetryBudget",
    "CircuitBreaker",
    "BreakerState",
    "Bulkhead",
    "BulkheadState",
    "OutlierDetection",
    "OutlierState",
    "ConnectionPool",
    "ApplicationBreaker",
    "ApplicationBreakerState",
    "CLOSED",
    "OPEN",
    "HALF_OPEN",
]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class Retry:
    """Retry a failed call up to ``attempts`` tries in total.

    The k-th retry waits ``backoff_ms × multiplier^(k−1)`` (capped at ``max_backoff_ms``); with
    ``jitter`` j in [0, 1] the wait is drawn uniformly from ``[(1 − j)·d, d]`` ("full jitter" at
    j = 1). ``budget`` (e.g. 0.2) is Finagle's retry budget (``RetryBudget``): in any
    ``budget_ttl_s`` window the retries may not exceed ``min_retries_per_s × budget_ttl_s`` plus
    ``budget`` × the requests of that window — deposits and withdrawals expire after the TTL
    (Finagle defaults: 20 %, 10 s, 10 per second). ``retry_other_host`` sends a
    retry to a replica not tried yet (Envoy's ``previous_hosts`` retry predicate, which Istio
    sets by default); :meth:`istio_default` is the retry policy every Istio route has.
    """

    attempts: int = 3
    backoff_ms: float = 10.0
    multiplier: float = 2.0
    max_backoff_ms: float = 1000.0
    jitter: float = 1.0
    budget: float | None = None
    min_retries_per_s: float = 10.0
    budget_ttl_s: float = 10.0
    retry_on_timeout: bool = True
    retry_other_host: bool = False

    def __post_init__(self):
        check_int("attempts", self.attempts)
        check_nonnegative("backoff_ms", self.backoff_ms)
        check_positive("multiplier", self.multiplier)
        check_nonnegative("max_backoff_ms", self.max_backoff_ms)
        check_fraction("jitter", self.jitter)
        if self.budget is not None:
            check_nonnegative("budget", self.budget)
        check_nonnegative("min_retries_per_s", self.min_retries_per_s)
        check_positive("budget_ttl_s", self.budget_ttl_s)

    @classmethod
    def istio_default(cls) -> "Retry":
        """Istio's default route retries: 2 retries (3 attempts), to another host, Envoy's default
        back-off (25 ms base, full jitter, at most 250 ms). Istio retries 503s and connection
        failures; the model's service errors and pool overflows count as such."""
        return cls(attempts=3, backoff_ms=25.0, multiplier=2.0, max_backoff_ms=250.0, jitter=1.0,
                   retry_other_host=True)

    def backoff_s(self, retry_number: int, u: float) -> float:
        """Wait before retry number ``retry_number`` (1-based), given a uniform draw ``u``."""
        d = min(self.backoff_ms * self.multiplier ** (retry_number - 1), self.max_backoff_ms) / 1000.0
        return d * (1.0 - self.jitter * u)

    def new_budget(self) -> "RetryBudget | None":
        if self.budget is None:
            return None
        return RetryBudget(self.budget, self.min_retries_per_s, self.budget_ttl_s)


class RetryBudget:
    """Finagle's token retry budget with expiring entries: each request deposits ``ratio``, each
    retry withdraws 1, both forgotten after ``ttl_s``; a retry may go when the reserve
    ``min_per_s × ttl_s`` plus the live entries is at least 1. (Finagle keeps the window in 10
    slices; this keeps exact times.) Source: Finagle docs, "Retries — retry budgets"."""

    __slots__ = ("ratio", "reserve", "ttl", "entries", "live", "exhausted")

    def __init__(self, ratio: float, min_per_s: float, ttl_s: float):
        self.ratio = ratio
        self.reserve = min_per_s * ttl_s
        self.ttl = ttl_s
        self.entries: deque = deque()
        self.live = 0.0
        self.exhausted = 0

    def _expire(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= now - self.ttl:
            self.live -= entries.popleft()[1]

    def deposit(self, now: float = 0.0) -> None:
        self._expire(now)
        self.entries.append((now, self.ratio))
        self.live += self.ratio

    def withdraw(self, now: float = 0.0) -> bool:
        self._expire(now)
        if self.reserve + self.live >= 1.0 - 1e-12:
            self.entries.append((now, -1.0))
            self.live -= 1.0
            return True
        self.exhausted += 1
        return False


@dataclass(frozen=True)
class CircuitBreaker:
    """Closed → open after ``consecutive_failures`` failures in a row, or when the error rate of
    the last ``window`` calls reaches ``error_rate`` (once ``min_calls`` calls were seen).
    Open rejects calls for ``open_ms``, then half-open lets ``half_open_calls`` probes through:
    all succeed → closed; any fails → open again.
    """

    consecutive_failures: int | None = 5
    error_rate: float | None = None
    window: int = 20
    min_calls: int = 10
    open_ms: float = 5000.0
    half_open_calls: int = 1

    def __post_init__(self):
        if self.consecutive_failures is None and self.error_rate is None:
            raise ValueError(
                "consecutive_failures: got None with error_rate None; valid: set at least one trip rule"
            )
        if self.consecutive_failures is not None:
            check_int("consecutive_failures", self.consecutive_failures)
        if self.error_rate is not None:
            check_fraction("error_rate", self.error_rate)
            if self.error_rate == 0:
                raise ValueError("error_rate: got 0; valid: a number in (0, 1]")
        check_int("window", self.window)
        check_int("min_calls", self.min_calls)
        check_positive("open_ms", self.open_ms)
        check_int("half_open_calls", self.half_open_calls)

    def new_state(self, name: str = "") -> "BreakerState":
        return BreakerState(self, name)


class BreakerState:
    """The running state of one circuit breaker. ``transitions`` lists ``(time_s, from, to)``."""

    __slots__ = ("spec", "name", "state", "consecutive", "recent", "failures_in_window",
                 "opened_at", "probes", "probe_successes", "transitions", "rejected", "_open_s")

    def __init__(self, spec: CircuitBreaker, name: str = ""):
        self.spec = spec
        self.name = name
        self.state = CLOSED
        self.consecutive = 0
        self.recent: deque = deque()
        self.failures_in_window = 0
        self.opened_at = 0.0
        self.probes = 0
        self.probe_successes = 0
        self.transitions: list[tuple[float, str, str]] = []
        self.rejected = 0
        self._open_s = spec.open_ms / 1000.0

    def _move(self, now: float, new: str) -> None:
        self.transitions.append((now, self.state, new))
        self.state = new
        if new == OPEN:
            self.opened_at = now
        elif new == HALF_OPEN:
            self.probes = 0
            self.probe_successes = 0
        else:  # closed: forget the past
            self.consecutive = 0
            self.recent.clear()
            self.failures_in_window = 0

    def allow(self, now: float) -> bool:
        """May a call go out at time ``now``? Counts a rejection if not."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN:
            if now - self.opened_at >= self._open_s:
                self._move(now, HALF_OPEN)
            else:
                self.rejected += 1
                return False
        if self.probes < self.spec.half_open_calls:
            self.probes += 1
            return True
        self.rejected += 1
        return False

    def record(self, ok: bool, now: float) -> None:
        """Report the outcome of a call that :meth:`allow` let through."""
        if self.state == HALF_OPEN:
            if not ok:
                self._move(now, OPEN)
            else:
                self.probe_successes += 1
                if self.probe_successes >= self.spec.half_open_calls:
                    self._move(now, CLOSED)
            return
        if self.state == OPEN:  # a late answer to a call made before the trip
            return
        spec = self.spec
        self.consecutive = 0 if ok else self.consecutive + 1
        if spec.consecutive_failures is not None and self.consecutive >= spec.consecutive_failures:
            self._move(now, OPEN)
            return
        if spec.error_rate is not None:
            self.recent.append(ok)
            if not ok:
                self.failures_in_window += 1
            if len(self.recent) > spec.window:
                if not self.recent.popleft():
                    self.failures_in_window -= 1
            n = len(self.recent)
            if n >= spec.min_calls and self.failures_in_window / n >= spec.error_rate:
                self._move(now, OPEN)


@dataclass(frozen=True)
class Bulkhead:
    """At most ``max_concurrent`` calls in flight; further calls are rejected at once."""

    max_concurrent: int = 10

    def __post_init__(self):
        check_int("max_concurrent", self.max_concurrent)

    def new_state(self) -> "BulkheadState":
        return BulkheadState(self.max_concurrent)


class BulkheadState:
    """Counter of calls in flight behind one bulkhead."""

    __slots__ = ("limit", "inflight", "rejected")

    def __init__(self, limit: int):
        self.limit = limit
        self.inflight = 0
        self.rejected = 0

    def try_acquire(self) -> bool:
        if self.inflight >= self.limit:
            self.rejected += 1
            return False
        self.inflight += 1
        return True

    def release(self) -> None:
        self.inflight -= 1


# --------------------------------------------------------------------------------------------
# The mesh's mechanisms (Envoy, configured by Istio DestinationRules and VirtualServices)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutlierDetection:
    """Envoy outlier detection (Istio ``DestinationRule.trafficPolicy.outlierDetection``), per
    calling proxy and **per host** (replica), consecutive-5xx detection:

    * a host answering ``consecutive_5xx_errors`` failures in a row (5xx, or a local-origin error
      such as a timeout or pool overflow) is ejected at once — unless ``max_ejection_percent`` of
      the hosts are ejected already (the first ejection always happens);
    * it stays out ``base_ejection_time_s × k`` (k = times ejected in a row, capped by
      ``max_ejection_time_s``) and is returned by the sweep every ``interval_s``; each sweep that
      finds a host healthy lowers its k by one;
    * ejected hosts take no traffic unless fewer than ``min_health_percent`` of the hosts are
      healthy: then the pool is in **panic** and traffic goes to all hosts (Istio's
      ``minHealthPercent`` sets Envoy's ``healthy_panic_threshold``; Istio's default is 0,
      Envoy's own 50).

    Defaults are Istio's. Sources: Envoy docs, "Outlier detection" (architecture overview) and
    ``config.cluster.v3.OutlierDetection``; Istio docs, ``DestinationRule``.
    """

    consecutive_5xx_errors: int = 5
    interval_s: float = 10.0
    base_ejection_time_s: float = 30.0
    max_ejection_percent: float = 10.0
    max_ejection_time_s: float = 300.0
    min_health_percent: float = 0.0

    def __post_init__(self):
        check_int("consecutive_5xx_errors", self.consecutive_5xx_errors)
        check_positive("interval_s", self.interval_s)
        check_positive("base_ejection_time_s", self.base_ejection_time_s)
        if not 0 <= self.max_ejection_percent <= 100:
            raise ValueError(f"max_ejection_percent: got {self.max_ejection_percent!r}; valid: a percentage in [0, 100]")
        check_positive("max_ejection_time_s", self.max_ejection_time_s)
        if not 0 <= self.min_health_percent <= 100:
            raise ValueError(f"min_health_percent: got {self.min_health_percent!r}; valid: a percentage in [0, 100]")

    def new_state(self, hosts: int, name: str = "") -> "OutlierState":
        return OutlierState(self, hosts, name)


class OutlierState:
    """Ejection state of one proxy's view of one upstream cluster. ``ejections`` lists
    ``(time_s, host, ejected_for_s)``; ``returns`` lists ``(time_s, host)``."""

    __slots__ = ("spec", "name", "n", "consecutive", "ejected_until", "multiplier", "next_sweep",
                 "ejected", "ejections", "returns", "panic_picks", "overflow_skipped")

    def __init__(self, spec: OutlierDetection, hosts: int, name: str = ""):
        self.spec = spec
        self.name = name
        self.n = hosts
        self.consecutive = [0] * hosts
        self.ejected_until = [None] * hosts  # ejection end (s) of an ejected host, else None
        self.multiplier = [0] * hosts
        self.next_sweep = spec.interval_s
        self.ejected = 0
        self.ejections: list[tuple[float, int, float]] = []
        self.returns: list[tuple[float, int]] = []
        self.panic_picks = 0
        self.overflow_skipped = 0  # ejections refused by max_ejection_percent

    def advance(self, now: float) -> None:
        """Run the interval sweeps due by ``now`` (lazily, so a finished run has no timer left)."""
        interval = self.spec.interval_s
        while self.next_sweep <= now:
            t = self.next_sweep
            for h in range(self.n):
                until = self.ejected_until[h]
                if until is not None:
                    if t >= until:
                        self.ejected_until[h] = None
                        self.ejected -= 1
                        self.returns.append((t, h))
                elif self.multiplier[h] > 0:
                    self.multiplier[h] -= 1
            self.next_sweep = t + interval

    def allowed(self, now: float) -> list[int] | None:
        """Hosts the load balancer may use now; ``None`` means all (nothing ejected, or panic)."""
        self.advance(now)
        if self.ejected == 0:
            return None
        healthy = [h for h in range(self.n) if self.ejected_until[h] is None]
        if 100.0 * len(healthy) / self.n < self.spec.min_health_percent:
            self.panic_picks += 1
            return None
        return healthy  # may be empty: no healthy upstream, the request fails (503)

    def record(self, host: int, ok: bool, now: float) -> None:
        """The outcome of one request to ``host``."""
        self.advance(now)
        if ok:
            self.consecutive[host] = 0
            return
        self.consecutive[host] += 1
        if self.consecutive[host] < self.spec.consecutive_5xx_errors or self.ejected_until[host] is not None:
            return
        self.consecutive[host] = 0
        if self.ejected and 100.0 * self.ejected / self.n >= self.spec.max_ejection_percent:
            self.overflow_skipped += 1
            return
        self.multiplier[host] += 1
        duration = min(self.spec.base_ejection_time_s * self.multiplier[host],
                       max(self.spec.max_ejection_time_s, self.spec.base_ejection_time_s))
        self.ejected_until[host] = now + duration
        self.ejected += 1
        self.ejections.append((now, host, duration))


@dataclass(frozen=True)
class ConnectionPool:
    """Envoy's circuit-breaking thresholds for HTTP/1.1 (Istio ``connectionPool``), per calling
    proxy and upstream cluster:

    * at most ``max_connections`` requests in flight to the service (one per connection,
      ``tcp.maxConnections``);
    * up to ``http1_max_pending_requests`` more **wait** for a connection; beyond that a request
      fails at once with a 503 — Envoy's ``upstream_rq_pending_overflow`` (the edge's
      ``pool_overflow`` column). ``http1_max_pending_requests=0`` is a pure loss system: a request
      that finds every connection busy is refused (Erlang B);
    * ``http2_max_requests`` (Envoy's ``max_requests``) caps in flight plus waiting;
    * ``max_retries`` (``http.maxRetries``, Envoy's ``max_retries``) caps the retries outstanding at
      once across the cluster; a retry beyond it is not made and the call fails with the last
      error — ``upstream_rq_retry_overflow`` (the ``retry_overflow`` column). ``None``: no cap
      (Istio's default is 2³²−1; Envoy's own default is 3).

    Unlike :class:`Bulkhead` (reject when ``max_concurrent`` are in flight), requests queue first.
    Sources: Envoy docs, "Circuit breaking" and ``config.cluster.v3.CircuitBreakers``; Istio docs,
    ``ConnectionPoolSettings`` and the "Circuit Breaking" task."""

    max_connections: int = 100
    http1_max_pending_requests: int = 50
    http2_max_requests: int | None = None
    max_retries: int | None = None

    def __post_init__(self):
        check_int("max_connections", self.max_connections)
        check_int("http1_max_pending_requests", self.http1_max_pending_requests, 0)
        if self.http2_max_requests is not None:
            check_int("http2_max_requests", self.http2_max_requests)
        if self.max_retries is not None:
            check_int("max_retries", self.max_retries, 0)

    @property
    def capacity(self) -> int:
        """Requests the pool holds at most (in flight plus waiting): K of an M/M/c/K queue."""
        k = self.max_connections + self.http1_max_pending_requests
        return k if self.http2_max_requests is None else min(k, max(self.http2_max_requests, self.max_connections))

    def overflows(self, in_flight: int, waiting: int) -> bool:
        """Would one more request overflow a pool with ``in_flight`` granted and ``waiting`` queued?"""
        if in_flight < self.max_connections and waiting == 0:
            return (self.http2_max_requests is not None and in_flight >= self.http2_max_requests)
        if waiting >= self.http1_max_pending_requests:
            return True
        return self.http2_max_requests is not None and waiting + in_flight >= self.http2_max_requests


@dataclass(frozen=True)
class ApplicationBreaker:
    """An application-level circuit breaker with resilience4j's semantics (count-based window).

    CLOSED: the outcomes of the last ``sliding_window_size`` calls are kept; once at least
    ``minimum_number_of_calls`` were recorded, a failure rate ≥ ``failure_rate_threshold`` (%)
    opens the breaker. OPEN: calls are rejected for ``wait_duration_in_open_state_s``, then the
    next call moves it to HALF_OPEN. HALF_OPEN: ``permitted_number_of_calls_in_half_open_state``
    calls go through (others are rejected); when all of them completed, their failure rate
    decides — ≥ threshold: OPEN again, else CLOSED. Defaults are resilience4j's.
    Source: resilience4j docs, "CircuitBreaker".
    """

    failure_rate_threshold: float = 50.0
    sliding_window_size: int = 100
    minimum_number_of_calls: int = 100
    wait_duration_in_open_state_s: float = 60.0
    permitted_number_of_calls_in_half_open_state: int = 10

    def __post_init__(self):
        if not 0 < self.failure_rate_threshold <= 100:
            raise ValueError(f"failure_rate_threshold: got {self.failure_rate_threshold!r}; valid: a percentage in (0, 100]")
        check_int("sliding_window_size", self.sliding_window_size)
        check_int("minimum_number_of_calls", self.minimum_number_of_calls)
        check_positive("wait_duration_in_open_state_s", self.wait_duration_in_open_state_s)
        check_int("permitted_number_of_calls_in_half_open_state", self.permitted_number_of_calls_in_half_open_state)

    def new_state(self, name: str = "") -> "ApplicationBreakerState":
        return ApplicationBreakerState(self, name)


class ApplicationBreakerState:
    """Running state of an :class:`ApplicationBreaker`; same interface as :class:`BreakerState`."""

    __slots__ = ("spec", "name", "state", "window", "failures", "opened_at", "permitted", "probe_done",
                 "probe_failed", "transitions", "rejected")

    def __init__(self, spec: ApplicationBreaker, name: str = ""):
        self.spec = spec
        self.name = name
        self.state = CLOSED
        self.window: deque = deque()
        self.failures = 0
        self.opened_at = 0.0
        self.permitted = 0
        self.probe_done = 0
        self.probe_failed = 0
        self.transitions: list[tuple[float, str, str]] = []
        self.rejected = 0

    def _move(self, now: float, new: str) -> None:
        self.transitions.append((now, self.state, new))
        self.state = new
        self.window.clear()
        self.failures = 0
        if new == OPEN:
            self.opened_at = now
        elif new == HALF_OPEN:
            self.permitted = self.probe_done = self.probe_failed = 0

    def allow(self, now: float) -> bool:
        if self.state == OPEN:
            if now - self.opened_at < self.spec.wait_duration_in_open_state_s:
                self.rejected += 1
                return False
            self._move(now, HALF_OPEN)
        if self.state == HALF_OPEN:
            if self.permitted >= self.spec.permitted_number_of_calls_in_half_open_state:
                self.rejected += 1
                return False
            self.permitted += 1
        return True

    def record(self, ok: bool, now: float) -> None:
        spec = self.spec
        if self.state == HALF_OPEN:
            self.probe_done += 1
            self.probe_failed += not ok
            if self.probe_done >= spec.permitted_number_of_calls_in_half_open_state:
                rate = 100.0 * self.probe_failed / self.probe_done
                self._move(now, OPEN if rate >= spec.failure_rate_threshold else CLOSED)
            return
        if self.state == OPEN:  # a late answer to a call made before the trip
            return
        self.window.append(ok)
        self.failures += not ok
        if len(self.window) > spec.sliding_window_size:
            self.failures -= not self.window.popleft()
        n = len(self.window)
        if n >= spec.minimum_number_of_calls and 100.0 * self.failures / n >= spec.failure_rate_threshold:
            self._move(now, OPEN)
