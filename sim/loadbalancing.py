"""Load-balancing policies over the replicas of one service.

A policy is a frozen spec; ``spec.new_state(n)`` gives a picker with ``pick(inflight)`` that
returns a replica index given the number of requests in flight at each replica.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import check_int, check_nonnegative

__all__ = ["RoundRobin", "Weighted", "LeastRequest", "RandomChoice", "LOAD_BALANCERS", "make_load_balancer"]


@dataclass(frozen=True)
class RoundRobin:
    """Each replica in turn."""

    def new_state(self, n: int, rng: np.random.Generator | None = None):
        return _RoundRobinState(n)


class _RoundRobinState:
    __slots__ = ("n", "i")

    def __init__(self, n):
        self.n = n
        self.i = -1

    def pick(self, inflight) -> int:
        self.i = (self.i + 1) % self.n
        return self.i


@dataclass(frozen=True)
class Weighted:
    """Smooth weighted round robin (nginx's algorithm): replica i gets weights[i]/Σ of requests,
    interleaved rather than in runs. A weight of 0 takes no traffic (a dark canary)."""

    weights: tuple = (1,)

    def __post_init__(self):
        ws = tuple(self.weights)
        if not ws:
            raise ValueError("weights: got (); valid: one weight >= 0 per replica, at least one > 0")
        for i, w in enumerate(ws):
            check_nonnegative(f"weights[{i}]", w)
        if sum(ws) <= 0:
            raise ValueError(f"weights: got {ws}; valid: one weight >= 0 per replica, at least one > 0")
        object.__setattr__(self, "weights", ws)

    def new_state(self, n: int, rng=None):
        if n != len(self.weights):
            raise ValueError(f"weights: got {len(self.weights)} weights for {n} replicas; valid: exactly {n}")
        return _WeightedState(self.weights)


class _WeightedState:
    __slots__ = ("w", "cur", "total")

    def __init__(self, weights):
        self.w = list(weights)
        self.cur = [0.0] * len(weights)
        self.total = float(sum(weights))

    def pick(self, inflight) -> int:
        cur, w = self.cur, self.w
        best = 0
        for i in range(len(w)):
            cur[i] += w[i]
            if cur[i] > cur[best]:
                best = i
        cur[best] -= self.total
        return best


@dataclass(frozen=True)
class LeastRequest:
    """Fewest requests in flight. ``choices=2`` samples two replicas at random and takes the
    less loaded (Envoy's default "power of two choices"); ``choices=None`` scans all."""

    choices: int | None = 2

    def __post_init__(self):
        if self.choices is not None:
            check_int("choices", self.choices, 2)

    def new_state(self, n: int, rng: np.random.Generator | None = None):
        return _LeastRequestState(n, self.choices, rng or np.random.default_rng(0))


class _LeastRequestState:
    __slots__ = ("n", "k", "rng", "buf", "i")

    def __init__(self, n, k, rng):
        self.n = n
        self.k = None if k is None or k >= n else k
        self.rng = rng
        self.buf = []
        self.i = 0

    def pick(self, inflight) -> int:
        if self.k is None:
            return min(range(self.n), key=inflight.__getitem__)
        if self.i >= len(self.buf):
            self.buf = self.rng.integers(0, self.n, (4096, self.k)).tolist()
            self.i = 0
        cand = self.buf[self.i]
        self.i += 1
        return min(cand, key=inflight.__getitem__)


@dataclass(frozen=True)
class RandomChoice:
    """A replica uniformly at random."""

    def new_state(self, n: int, rng: np.random.Generator | None = None):
        return _RandomState(n, rng or np.random.default_rng(0))


class _RandomState:
    __slots__ = ("n", "rng", "buf", "i")

    def __init__(self, n, rng):
        self.n = n
        self.rng = rng
        self.buf = []
        self.i = 0

    def pick(self, inflight) -> int:
        if self.i >= len(self.buf):
            self.buf = self.rng.integers(0, self.n, 4096).tolist()
            self.i = 0
        self.i += 1
        return self.buf[self.i - 1]


LOAD_BALANCERS = {
    "round_robin": RoundRobin,
    "weighted": Weighted,
    "least_request": LeastRequest,
    "random": RandomChoice,
}


def make_load_balancer(spec) -> object:
    """Accept a policy object or one of the names in ``LOAD_BALANCERS``."""
    if isinstance(spec, (RoundRobin, Weighted, LeastRequest, RandomChoice)):
        return spec
    if isinstance(spec, str) and spec in LOAD_BALANCERS and spec != "weighted":
        return LOAD_BALANCERS[spec]()
    raise ValueError(
        f"load_balancer: got {spec!r}; valid: one of {sorted(LOAD_BALANCERS)} "
        "(use sim.Weighted(weights) for weights)"
    )
