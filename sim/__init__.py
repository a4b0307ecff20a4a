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
:mod:`sim.autoscaling`, :mod:`sim.canary`, :mod:`sim.cost`; :mod:`sim.patterns` (lesson helpers);
:mod:`sim.results`; and, imported on their own, :mod:`sim.plots` and :mod:`sim.widgets`.
"""

from . import theory
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
    simulate_spot,
)
from .callgraph import CallGraph, chain_graph, run_callgraph
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
from .ratelimit import TokenBucket, simulate_rate_limit
from .resilience import Bulkhead, CircuitBreaker, Retry
from .results import CallGraphResult, Estimate, QueueResult, StationResult

__all__ = [
    "run", "theory",
    # distributions and calibration
    "Distribution", "Exponential", "Deterministic", "LogNormal", "Gamma", "Empirical", "DISTRIBUTIONS",
    "make_distribution", "as_distribution", "fit_service_time",
    # queues and networks
    "Station", "QueueScenario", "NetworkScenario", "QueueResult", "StationResult", "Estimate",
    # call graphs and policies
    "CallGraph", "CallGraphResult", "run_callgraph", "chain_graph", "Retry", "CircuitBreaker", "Bulkhead",
    "TokenBucket", "simulate_rate_limit", "RoundRobin", "Weighted", "LeastRequest", "RandomChoice",
    # autoscaling, canary, cost
    "HPA", "ClusterAutoscaler", "HPAScenario", "AutoscalingResult", "load_steps", "simulate_autoscaling",
    "Version", "CanaryScenario", "CanaryResult", "simulate_canary",
    "InstanceType", "PRICE_SHEET", "Pod", "Node", "bin_pack", "allocate", "CostAllocation",
    "ClusterCostScenario", "simulate_spot",
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
