"""Resilience policies: retries with backoff, jitter and a budget; circuit breakers; bulkheads.

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
    j = 1). ``budget`` (e.g. 0.2) caps retries at that fraction of first attempts, as Envoy and
    Finagle retry budgets do, plus ``min_retries`` to get started.
    """

    attempts: int = 3
    backoff_ms: float = 10.0
    multiplier: float = 2.0
    max_backoff_ms: float = 1000.0
    jitter: float = 1.0
    budget: float | None = None
    min_retries: int = 10
    retry_on_timeout: bool = True

    def __post_init__(self):
        check_int("attempts", self.attempts)
        check_nonnegative("backoff_ms", self.backoff_ms)
        check_positive("multiplier", self.multiplier)
        check_nonnegative("max_backoff_ms", self.max_backoff_ms)
        check_fraction("jitter", self.jitter)
        if self.budget is not None:
            check_nonnegative("budget", self.budget)
        check_int("min_retries", self.min_retries, 0)

    def backoff_s(self, retry_number: int, u: float) -> float:
        """Wait before retry number ``retry_number`` (1-based), given a uniform draw ``u``."""
        d = min(self.backoff_ms * self.multiplier ** (retry_number - 1), self.max_backoff_ms) / 1000.0
        return d * (1.0 - self.jitter * u)

    def new_budget(self) -> "RetryBudget | None":
        return RetryBudget(self.budget, self.min_retries) if self.budget is not None else None


class RetryBudget:
    """Token account: each first attempt deposits ``ratio``; each retry withdraws 1."""

    __slots__ = ("ratio", "balance", "exhausted")

    def __init__(self, ratio: float, min_retries: int):
        self.ratio = ratio
        self.balance = float(min_retries)
        self.exhausted = 0

    def deposit(self) -> None:
        self.balance += self.ratio

    def withdraw(self) -> bool:
        if self.balance >= 1.0:
            self.balance -= 1.0
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
