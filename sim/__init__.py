"""CloudMart Course simulation library: small SimPy building blocks, checked against theory.

Time inside every model is in **seconds**; names carry their unit (``latency_ms``,
``rate_per_s``, ``cost_usd_per_h``). Scenarios are small frozen values and
``run(scenario, seed=…)`` turns one into results (dataclasses/DataFrames with percentiles and
confidence intervals). The same seed gives the same numbers, so notebook outputs compare exactly.

>>> from sim import QueueScenario, Exponential, run, theory
>>> result = run(QueueScenario(arrival_rate_per_s=0.7, service=Exponential(1.0)), seed=1)
>>> round(theory.mm1_mean_sojourn_s(0.7, 1.0), 3)
3.333

Modules: :mod:`sim.distributions`, :mod:`sim.theory`, :mod:`sim.queueing` (stations, networks),
:mod:`sim.callgraph` with :mod:`sim.resilience`, :mod:`sim.ratelimit`, :mod:`sim.loadbalancing`;
:mod:`sim.autoscaling`, :mod:`sim.canary`, :mod:`sim.cost`; :mod:`sim.mesh` (sidecar cost, outlier
ejection with retries) and :mod:`sim.abtest` (sample size, peeking) for Day 2; :mod:`sim.patterns` (lesson helpers);
:mod:`sim.results`; and, imported on their own, :mod:`sim.plots`, :mod:`sim.widgets`,
:mod:`sim.security` and :mod:`sim.policy` (Day 3).
"""

from . import abtest, calibrate, mesh, theory
from .autoscaling import HPA, AutoscalingResult, ClusterAutoscaler, HPAScenario, load_steps, simulate_autoscaling
from .canary import CanaryResult, CanaryScenario, Version, simulate_canary
from .cost import (
    PRICE_SHEET,
    ClusterCostScenario,
    CostAllocation,
    InstanceType,
    Node,
    Pod,
    allocate,
    bin_pack,
    gke_reserved,
    simulate_spot,
)
from .callgraph import CallGraph, chain_graph, run_callgraph
from .cpu import SharedCPU
from .distributions import (
    DISTRIBUTIONS,
    Deterministic,
    Distribution,
    Empirical,
    Exponential,
    Gamma,
    LogNormal,
    as_distribution,
    fit_service_time,
    make_distribution,
)
from .patterns import capacity_plan, latency_row, monolith_vs_microservices, saga_outcomes, sweep, sync_vs_async
from .loadbalancing import LeastRequest, RandomChoice, RoundRobin, Weighted
from .queueing import NetworkScenario, QueueScenario, Station
from .ratelimit import EnvoyLocalRateLimit, FixedWindow, KongRateLimiting, TokenBucket, simulate_rate_limit
from .resilience import ApplicationBreaker, Bulkhead, CircuitBreaker, ConnectionPool, OutlierDetection, Retry
from .results import CallGraphResult, Estimate, QueueResult, StationResult, replication_estimate

__all__ = [
    "SharedCPU",
    "run", "replicate", "run_to_precision", "theory", "calibrate", "abtest", "mesh",
    # distributions and calibration
    "Distribution", "Exponential", "Deterministic", "LogNormal", "Gamma", "Empirical", "DISTRIBUTIONS",
    "make_distribution", "as_distribution", "fit_service_time",
    # queues and networks
    "Station", "QueueScenario", "NetworkScenario", "QueueResult", "StationResult", "Estimate",
    # call graphs and policies
    "CallGraph", "CallGraphResult", "run_callgraph", "chain_graph", "Retry", "CircuitBreaker", "Bulkhead",
    "OutlierDetection", "ConnectionPool", "ApplicationBreaker",
    "TokenBucket", "FixedWindow", "KongRateLimiting", "EnvoyLocalRateLimit", "simulate_rate_limit", "RoundRobin", "Weighted", "LeastRequest", "RandomChoice",
    # autoscaling, canary, cost
    "HPA", "ClusterAutoscaler", "HPAScenario", "AutoscalingResult", "load_steps", "simulate_autoscaling",
    "Version", "CanaryScenario", "CanaryResult", "simulate_canary",
    "InstanceType", "PRICE_SHEET", "Pod", "Node", "bin_pack", "allocate", "CostAllocation",
    "ClusterCostScenario", "simulate_spot", "gke_reserved",
    # lesson helpers
    "sweep", "latency_row", "monolith_vs_microservices", "saga_outcomes", "sync_vs_async", "capacity_plan",
]


def run(scenario, seed: int = 0, **options):
    """Run any scenario of this library and return its result object.

    ``scenario`` is a :class:`QueueScenario`, :class:`NetworkScenario`, :class:`CallGraph` (or a
    bare call-graph ``networkx.DiGraph``), or any other scenario value of :mod:`sim` (autoscaling,
    canary, cost). ``options`` pass through (e.g. ``rate_per_s=…, n_requests=…`` for call graphs).
    """
    import networkx as nx

    if isinstance(scenario, nx.DiGraph):
        scenario = CallGraph(scenario)
    runner = getattr(scenario, "_run", None)
    if runner is None:
        raise ValueError(
            f"scenario: got {type(scenario).__name__}; valid: a scenario value of sim "
            "(QueueScenario, NetworkScenario, CallGraph, HPAScenario, CanaryScenario, ClusterCostScenario, …)"
        )
    return runner(seed=seed, **options)


def _metric(result, metric):
    if callable(metric):
        return metric(result)
    value = result
    for part in str(metric).split("."):
        value = getattr(value, part)
    return value


def replicate(scenario, replications: int = 10, seed: int = 0, metric="p99_response_s", **options) -> Estimate:
    """Independent replications: run ``scenario`` with ``replications`` independent seeds (drawn
    from ``seed``) and return the mean of ``metric`` with a Student-t interval over the runs.

    ``metric`` is an attribute path of the result (``"p99_response_s"``,
    ``"station.p99_sojourn_s"``, ``"p99_latency_ms"``) or a function of the result; an
    :class:`Estimate` counts by its value. The classic remedy when one long run's interval is
    in doubt (Law, *Simulation Modeling and Analysis*, ch. 9).
    """
    from ._validate import check_int
    import numpy as np

    check_int("replications", replications, 2)
    seeds = np.random.SeedSequence(int(seed)).generate_state(replications).tolist()
    values = [float(_metric(run(scenario, seed=int(s), **options), metric)) for s in seeds]
    return replication_estimate(values)


def run_to_precision(scenario, metric="p99_response_s", relative_half_width: float = 0.05, seed: int = 0,
                     max_size: int = 1_000_000, **options):
    """Run ``scenario``, doubling its length (``customers`` or ``n_requests``) until the interval
    of ``metric`` is within ``relative_half_width`` of its value or ``max_size`` is reached.
    Returns ``(result, estimate)``; check ``estimate.relative_half_width`` when the cap was hit."""
    import dataclasses

    from ._validate import check_int, check_positive

    check_positive("relative_half_width", relative_half_width)
    check_int("max_size", max_size, 10)
    size_field = "customers" if hasattr(scenario, "customers") else "n_requests"
    if not hasattr(scenario, size_field):
        raise ValueError(f"scenario: got {type(scenario).__name__}; valid: a scenario with customers or n_requests")
    size = getattr(scenario, size_field)
    while True:
        result = run(dataclasses.replace(scenario, **{size_field: size}), seed=seed, **options)
        estimate = _metric(result, metric)
        if not isinstance(estimate, Estimate):
            raise ValueError(f"metric: got {metric!r} giving {type(estimate).__name__}; valid: a metric with an interval")
        if estimate.relative_half_width <= relative_half_width or size >= max_size:
            return result, estimate
        size = min(2 * size, max_size)
