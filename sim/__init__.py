"""CloudMart Course simulation library: small SimPy building blocks, checked against theory.

Time inside every model is in **seconds**; names carry their unit (``latency_ms``,
``rate_per_s``, ``cost_usd_per_h``). Scenarios are small frozen values and
``run(scenario, seed=…)`` turns one into results (dataclasses/DataFrames with percentiles and
confidence intervals). The same seed gives the same numbers, so notebook outputs compare exactly.

>>> from sim import QueueScenario, Exponential, run, theory
>>> result = run(QueueScenario(arrival_rate_per_s=0.7, service=Exponential(1.0)), seed=1)
>>> round(theory.mm1_mean_sojourn_s(0.7, 1.0), 3)
3.333
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
from .loadbalancing import LeastRequest, RandomChoice, RoundRobin, Weighted
from .queueing import NetworkScenario, QueueScenario, Station
from .ratelimit import TokenBucket, simulate_rate_limit
from .resilience import Bulkhead, CircuitBreaker, Retry
from .results import CallGraphResult, Estimate, QueueResult, StationResult


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
