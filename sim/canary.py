"""Canary rollout with step weights and automated analysis (Flagger/Argo Rollouts style).

A controller (a SimPy process) moves the canary through ``steps_percent`` of the traffic, one
step every ``step_s``. At the end of each step it analyses the canary's requests of that step:
the error rate must stay at or below ``max_error_rate`` and the p99 latency at or below
``max_p99_ms`` (optionally also relative to the baseline). A failed check counts towards
``failed_checks_to_rollback``; reaching it rolls back (weight 0). Passing every step promotes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import simpy

from ._validate import check_fraction, check_int, check_positive
from .distributions import Distribution, LogNormal, as_distribution

__all__ = ["Version", "CanaryScenario", "CanaryResult", "simulate_canary"]


@dataclass(frozen=True)
class Version:
    """One version of a service: its error rate and latency distribution (seconds)."""

    error_rate: float = 0.001
    latency: Distribution = LogNormal(0.05, 0.5)

    def __post_init__(self):
        check_fraction("error_rate", self.error_rate)
        object.__setattr__(self, "latency", as_distribution(self.latency, "latency"))


@dataclass(frozen=True)
class CanaryScenario:
    """A progressive rollout of ``canary`` next to ``baseline`` under ``rate_per_s`` requests."""

    baseline: Version = Version()
    canary: Version = Version()
    rate_per_s: float = 50.0
    steps_percent: tuple = (5, 10, 25, 50, 100)
    step_s: float = 120.0
    max_error_rate: float = 0.01
    max_p99_ms: float = 500.0
    max_p99_ratio_to_baseline: float | None = None
    min_requests: int = 20
    failed_checks_to_rollback: int = 1

    def __post_init__(self):
        for key in ("baseline", "canary"):
            if not isinstance(getattr(self, key), Version):
                raise ValueError(f"{key}: got {getattr(self, key)!r}; valid: a sim.Version")
        check_positive("rate_per_s", self.rate_per_s)
        steps = tuple(self.steps_percent)
        if not steps:
            raise ValueError("steps_percent: got (); valid: increasing weights in (0, 100]")
        prev = 0
        for i, w in enumerate(steps):
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not prev < w <= 100:
                raise ValueError(f"steps_percent[{i}]: got {w!r}; valid: increasing weights in ({prev}, 100]")
            prev = w
        object.__setattr__(self, "steps_percent", steps)
        check_positive("step_s", self.step_s)
        check_fraction("max_error_rate", self.max_error_rate)
        check_positive("max_p99_ms", self.max_p99_ms)
        if self.max_p99_ratio_to_baseline is not None:
            check_positive("max_p99_ratio_to_baseline", self.max_p99_ratio_to_baseline)
        check_int("min_requests", self.min_requests)
        check_int("failed_checks_to_rollback", self.failed_checks_to_rollback)

    def _run(self, seed: int = 0) -> "CanaryResult":
        return simulate_canary(self, seed)


@dataclass(frozen=True)
class CanaryResult:
    """Outcome of a rollout: ``decision`` is ``"promoted"`` or ``"rolled_back"``."""

    scenario: CanaryScenario
    seed: int
    decision: str
    decided_at_s: float
    steps: pd.DataFrame
    canary_requests: int
    canary_errors: int

    def to_frame(self) -> pd.DataFrame:
        """One row per analysed step."""
        return self.steps


def simulate_canary(sc: CanaryScenario, seed: int = 0) -> CanaryResult:
    """Run a :class:`CanaryScenario`; see :func:`sim.run`."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    rows = []
    outcome = {"decision": "promoted", "at": 0.0, "requests": 0, "errors": 0}

    def serve(version: Version, n: int):
        errors = int(rng.binomial(n, version.error_rate)) if n else 0
        latency_ms = version.latency.sample(rng, n) * 1000.0 if n else np.zeros(0)
        return errors, latency_ms

    def controller(env):
        """Step the weight, analyse each step, roll back on failed checks."""
        failed = 0
        for step, weight in enumerate(sc.steps_percent):
            yield env.timeout(sc.step_s)
            total = int(rng.poisson(sc.rate_per_s * sc.step_s))
            n_canary = int(rng.binomial(total, weight / 100.0))
            n_base = total - n_canary
            c_err, c_lat = serve(sc.canary, n_canary)
            b_err, b_lat = serve(sc.baseline, n_base)
            outcome["requests"] += n_canary
            outcome["errors"] += c_err
            c_rate = c_err / n_canary if n_canary else float("nan")
            c_p99 = float(np.quantile(c_lat, 0.99)) if n_canary else float("nan")
            b_p99 = float(np.quantile(b_lat, 0.99)) if n_base else float("nan")
            enough = n_canary >= sc.min_requests
            ok = True
            if enough:
                ok = c_rate <= sc.max_error_rate and c_p99 <= sc.max_p99_ms
                if sc.max_p99_ratio_to_baseline is not None and n_base:
                    ok = ok and c_p99 <= sc.max_p99_ratio_to_baseline * b_p99
            rows.append({
                "step": step, "t_s": env.now, "weight_percent": weight, "canary_requests": n_canary,
                "canary_error_rate": c_rate, "canary_p99_ms": c_p99,
                "baseline_error_rate": b_err / n_base if n_base else float("nan"),
                "baseline_p99_ms": b_p99, "analysed": enough, "passed": ok,
            })
            if not ok:
                failed += 1
                if failed >= sc.failed_checks_to_rollback:
                    outcome["decision"] = "rolled_back"
                    outcome["at"] = env.now
                    return
        outcome["at"] = env.now

    env.process(controller(env))
    env.run()
    return CanaryResult(
        scenario=sc, seed=int(seed), decision=outcome["decision"], decided_at_s=outcome["at"],
        steps=pd.DataFrame(rows), canary_requests=outcome["requests"], canary_errors=outcome["errors"],
    )
