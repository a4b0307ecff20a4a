"""Canary rollout with automated analysis, following Flagger's canary strategy.

The controller (a SimPy process) wakes every ``step_s`` (Flagger's ``analysis.interval``):

1. if the failed checks already reached ``failed_checks_to_rollback`` (``analysis.threshold``)
   it **rolls back** (all traffic to the primary);
2. on its first wake-up it routes the first weight to the canary without analysing (there is no
   canary traffic yet);
3. otherwise it analyses the canary's requests of the last interval — the error rate against
   ``max_error_rate`` (the ``request-success-rate`` check, ``thresholdRange.min = 100·(1 −
   max_error_rate)``) and the p99 against ``max_p99_ms`` (the ``request-duration`` check,
   ``thresholdRange.max``), optionally against ``max_p99_ratio_to_baseline`` × the primary's p99;
   a failed check **halts advancement** (the weight stays) and counts one failed check;
4. a passed check moves to the next of ``steps_percent`` (``analysis.stepWeights``); a passed
   check at the last weight **promotes**.

The failed-check counter is not reset by later passes (Flagger resets it only for a new
revision). So the canary is exposed for ``threshold + 1`` intervals at the weight where it fails.
The p99 is read as Prometheus reads it — ``histogram_quantile`` over the services' histogram
buckets (``histogram_buckets_s``, the ``http_request_duration_seconds`` buckets of CloudMart),
which interpolates linearly inside a bucket — or exactly with ``histogram_buckets_s=None``.
Sources: Flagger docs, "Deployment strategies: canary release" and "Metrics analysis"; Flagger's
``pkg/controller/scheduler.go``; Prometheus docs, ``histogram_quantile``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import simpy

from ._validate import check_fraction, check_int, check_positive
from .distributions import Distribution, LogNormal, as_distribution

__all__ = ["Version", "CanaryScenario", "CanaryResult", "simulate_canary", "histogram_quantile",
           "CLOUDMART_BUCKETS_S", "detection_probability", "first_check_failure_probability"]

# The le bounds of CloudMart's http_request_duration_seconds histogram (services/common/metrics).
CLOUDMART_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def histogram_quantile(q: float, upper_bounds_s, counts) -> float:
    """Prometheus' ``histogram_quantile``: ``counts[i]`` observations fell in bucket i, i.e. in
    ``(upper_bounds_s[i-1], upper_bounds_s[i]]``; ``counts`` may have one more entry, the +Inf
    bucket. The rank ``q·total`` is located in its bucket and interpolated linearly between the
    bucket's bounds (the first bucket starts at 0); a rank in the +Inf bucket returns the largest
    finite bound. NaN without observations."""
    check_fraction("q", q)
    bounds = [float(b) for b in upper_bounds_s]
    counts = np.asarray(counts, dtype=float)
    if counts.size not in (len(bounds), len(bounds) + 1):
        raise ValueError(f"counts: got {counts.size} buckets; valid: {len(bounds)} or {len(bounds) + 1} (+Inf)")
    cumulative = np.cumsum(counts)
    total = float(cumulative[-1]) if cumulative.size else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    b = int(np.searchsorted(cumulative, rank, side="left"))
    if b >= len(bounds):  # the +Inf bucket
        return bounds[-1]
    start = 0.0 if b == 0 else bounds[b - 1]
    below = 0.0 if b == 0 else float(cumulative[b - 1])
    in_bucket = float(cumulative[b]) - below
    if in_bucket <= 0:
        return bounds[b]
    return start + (bounds[b] - start) * (rank - below) / in_bucket


def _bucket_counts(latency_s: np.ndarray, bounds) -> np.ndarray:
    # side="left": a value equal to a bound belongs to that bound's bucket (le is inclusive)
    return np.bincount(np.searchsorted(bounds, latency_s, side="left"), minlength=len(bounds) + 1)


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
    """A Flagger-style rollout of ``canary`` next to ``baseline`` (the primary) under ``rate_per_s``.

    Flagger names: ``steps_percent`` = ``analysis.stepWeights``, ``step_s`` =
    ``analysis.interval``, ``failed_checks_to_rollback`` = ``analysis.threshold``;
    ``max_error_rate`` and ``max_p99_ms`` are the built-in ``request-success-rate`` and
    ``request-duration`` checks. An interval with fewer than ``min_requests`` canary requests
    fails its check (Flagger: a metric query without values fails).
    """

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
    histogram_buckets_s: tuple | None = CLOUDMART_BUCKETS_S

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
        if self.histogram_buckets_s is not None:
            bounds = tuple(float(check_positive(f"histogram_buckets_s[{i}]", b))
                           for i, b in enumerate(self.histogram_buckets_s))
            if not bounds or any(b <= a for a, b in zip(bounds, bounds[1:])):
                raise ValueError(f"histogram_buckets_s: got {self.histogram_buckets_s!r}; "
                                 "valid: None or increasing bucket bounds in seconds")
            object.__setattr__(self, "histogram_buckets_s", bounds)

    def p99_ms(self, latency_s: np.ndarray) -> float:
        """The p99 (ms) the analysis reads from these latencies: histogram_quantile or exact."""
        if latency_s.size == 0:
            return float("nan")
        if self.histogram_buckets_s is None:
            return float(np.quantile(latency_s, 0.99)) * 1000.0
        counts = _bucket_counts(latency_s, self.histogram_buckets_s)
        return histogram_quantile(0.99, self.histogram_buckets_s, counts) * 1000.0

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
        """One row per analysis (interval)."""
        return self.steps

    @property
    def exposed_errors(self) -> int:
        """Errors the canary served to users before the decision (its blast radius)."""
        return self.canary_errors

    @property
    def rolled_back(self) -> bool:
        return self.decision == "rolled_back"


def detection_probability(sc: CanaryScenario, seeds=range(200)) -> dict:
    """The rollout over many ``seeds``: the share rolled back (the detection probability when the
    canary is bad, the false-rollback rate when it is not) with a Wilson 95 % interval, and the
    mean exposed errors, canary requests and decision time."""
    from .mesh import wilson_interval

    runs = [simulate_canary(sc, int(s)) for s in seeds]
    if not runs:
        raise ValueError("seeds: got none; valid: at least one seed")
    k = sum(r.rolled_back for r in runs)
    low, high = wilson_interval(k, len(runs))
    return {"rolled_back": k / len(runs), "low": low, "high": high, "runs": len(runs),
            "mean_exposed_errors": float(np.mean([r.exposed_errors for r in runs])),
            "mean_canary_requests": float(np.mean([r.canary_requests for r in runs])),
            "mean_decided_at_s": float(np.mean([r.decided_at_s for r in runs]))}


def first_check_failure_probability(sc: CanaryScenario) -> float:
    """Closed form of the error-rate gate at the first weight: the canary gets N ~ Poisson(λ·T·w)
    requests in the interval (a thinned Poisson stream) and fails the check if N < min_requests or
    its errors X ~ Binomial(N, p) exceed ``max_error_rate``·N. (The p99 gate is ignored: give the
    scenario a ``max_p99_ms`` the latencies never reach.) With one step and
    ``failed_checks_to_rollback=1`` this is the probability of a rollback."""
    from scipy import stats

    mean = sc.rate_per_s * sc.step_s * sc.steps_percent[0] / 100.0
    hi = int(mean + 12 * math.sqrt(mean) + 20)
    n = np.arange(hi + 1)
    pn = stats.poisson.pmf(n, mean)
    allowed = np.floor(sc.max_error_rate * n + 1e-9)
    fail = np.where(n < sc.min_requests, 1.0, stats.binom.sf(allowed, n, sc.canary.error_rate))
    return float((pn * fail).sum())


def simulate_canary(sc: CanaryScenario, seed: int = 0) -> CanaryResult:
    """Run a :class:`CanaryScenario`; see :func:`sim.run`."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    rows = []
    outcome = {"decision": "promoted", "at": 0.0, "requests": 0, "errors": 0}

    def serve(version: Version, n: int):
        errors = int(rng.binomial(n, version.error_rate)) if n else 0
        latency_s = version.latency.sample(rng, n) if n else np.zeros(0)
        return errors, latency_s

    def controller(env):
        """Flagger's scheduler: one pass per interval (see the module docs)."""
        failed = 0
        step = 0
        weight = sc.steps_percent[0]  # first pass: route the first weight, nothing to analyse
        while True:
            yield env.timeout(sc.step_s)
            # the interval that just ended ran at `weight`
            total = int(rng.poisson(sc.rate_per_s * sc.step_s))
            n_canary = int(rng.binomial(total, weight / 100.0))
            n_base = total - n_canary
            c_err, c_lat = serve(sc.canary, n_canary)
            b_err, b_lat = serve(sc.baseline, n_base)
            outcome["requests"] += n_canary
            outcome["errors"] += c_err
            if failed >= sc.failed_checks_to_rollback:
                outcome.update(decision="rolled_back", at=env.now)
                return
            c_rate = c_err / n_canary if n_canary else float("nan")
            c_p99 = sc.p99_ms(c_lat)
            b_p99 = sc.p99_ms(b_lat)
            enough = n_canary >= sc.min_requests
            ok = enough and c_rate <= sc.max_error_rate and c_p99 <= sc.max_p99_ms
            if ok and sc.max_p99_ratio_to_baseline is not None and n_base:
                ok = c_p99 <= sc.max_p99_ratio_to_baseline * b_p99
            if not ok:
                failed += 1
            rows.append({
                "step": step, "t_s": env.now, "weight_percent": weight, "canary_requests": n_canary,
                "canary_error_rate": c_rate, "canary_p99_ms": c_p99,
                "baseline_error_rate": b_err / n_base if n_base else float("nan"),
                "baseline_p99_ms": b_p99, "analysed": enough, "passed": bool(ok), "failed_checks": failed,
            })
            if not ok:
                continue  # halt advancement: same weight next interval
            if step + 1 == len(sc.steps_percent):
                outcome["at"] = env.now
                return  # promoted
            step += 1
            weight = sc.steps_percent[step]

    env.process(controller(env))
    env.run()
    return CanaryResult(
        scenario=sc, seed=int(seed), decision=outcome["decision"], decided_at_s=outcome["at"],
        steps=pd.DataFrame(rows), canary_requests=outcome["requests"], canary_errors=outcome["errors"],
    )
