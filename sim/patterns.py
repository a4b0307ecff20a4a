"""Thin compositions of the building blocks that the lessons ask the same questions with.

* :func:`sweep` — run a scenario family over a parameter and tabulate latency with intervals.
* :func:`monolith_vs_microservices` — the same work as one station or as a call graph.
* :func:`saga_outcomes` — a saga's terminal outcome rates, simulated and analytic.
* :func:`sync_vs_async` — sync chain vs async events vs request-reply with a slow downstream.
* :func:`capacity_plan` — replicas and instance type meeting a p99 SLO at minimum cost.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import networkx as nx
import numpy as np
import pandas as pd
import simpy

from . import theory
from ._validate import check_fraction, check_int, check_positive
from .callgraph import CallGraph, run_callgraph
from .cost import PRICE_SHEET, InstanceType
from .distributions import Exponential, LogNormal, as_distribution
from .queueing import QueueScenario, run_queueing
from .results import CallGraphResult, QueueResult, batch_means

__all__ = ["latency_row", "sweep", "monolith_vs_microservices", "saga_outcomes", "sync_vs_async",
           "capacity_plan"]


def latency_row(result) -> dict[str, float]:
    """Headline latency numbers (ms) with interval bounds from a queue or call-graph result."""
    if isinstance(result, CallGraphResult):
        est = {"mean": result.mean_latency_ms, "p50": result.p50_latency_ms, "p99": result.p99_latency_ms}
        scale = 1.0
        extra = {"success_rate": result.success_rate.value, "throughput_per_s": result.throughput_per_s}
    elif isinstance(result, QueueResult):
        est = {"mean": result.mean_response_s, "p50": result.p50_response_s, "p99": result.p99_response_s}
        scale = 1000.0
        extra = {"success_rate": 1.0, "throughput_per_s": result.throughput_per_s}
    else:
        raise ValueError(f"result: got {type(result).__name__}; valid: a QueueResult or CallGraphResult")
    row = {}
    for key, e in est.items():
        row[f"{key}_ms"] = e.value * scale
        row[f"{key}_ms_low"] = e.low * scale
        row[f"{key}_ms_high"] = e.high * scale
    row.update(extra)
    return row


def sweep(make_scenario: Callable[[Any], Any], values: Iterable, seed: int = 0, name: str = "rate_per_s",
          **run_options: Any) -> pd.DataFrame:
    """Run ``make_scenario(v)`` for every ``v`` (same seed) and tabulate :func:`latency_row`."""
    from . import run

    rows = []
    for v in values:
        rows.append({name: v, **latency_row(run(make_scenario(v), seed=seed, **run_options))})
    if not rows:
        raise ValueError("values: got nothing to sweep; valid: at least one value")
    return pd.DataFrame(rows)


def _split_cores(work_ms: Mapping[str, float], cores: int) -> dict[str, int]:
    total = sum(work_ms.values())
    share = {k: max(1, round(cores * w / total)) for k, w in work_ms.items()}
    return share


def monolith_vs_microservices(
    rate_per_s: float = 200.0,
    work_ms: Mapping[str, float] | None = None,
    cores: int = 8,
    cv: float = 1.0,
    hop_delay_ms: float = 0.3,
    sidecar_ms: float = 0.0,
    serialisation_ms: float = 0.2,
    core_usd_per_h: float = 0.048,
    slo_p99_ms: float | None = None,
    n_requests: int = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    """The same request as one monolith station or as a chain of services.

    The monolith runs all of ``work_ms`` in one process on ``cores`` servers. The microservice
    version runs each part as a service with cores split in proportion to its work, called in a
    chain with ``hop_delay_ms`` per hop (plus ``sidecar_ms`` per sidecar with a mesh) and
    ``serialisation_ms`` of extra work per remote call. Returns one row per architecture: p50 and
    p99 (ms) with intervals, capacity (req/s), throughput per core and hourly cost.
    """
    work_ms = dict(work_ms or {"frontend": 2.0, "product": 3.0, "order": 4.0, "payment": 3.0})
    if not work_ms:
        raise ValueError("work_ms: got {}; valid: at least one service with work > 0 ms")
    for k, w in work_ms.items():
        check_positive(f"work_ms[{k!r}]", w)
    check_positive("rate_per_s", rate_per_s)
    check_int("cores", cores)
    total_s = sum(work_ms.values()) / 1000.0
    rows = []
    mono = run_queueing(QueueScenario(rate_per_s, LogNormal(total_s, cv), cores, customers=n_requests), seed)
    split = _split_cores(work_ms, cores)
    g = nx.DiGraph()
    names = list(work_ms)
    for i, name in enumerate(names):
        extra = serialisation_ms if i else 0.0
        g.add_node(name, service_time=LogNormal((work_ms[name] + extra) / 1000.0, cv), servers=split[name])
        if i:
            g.add_edge(names[i - 1], name)
    micro = run_callgraph(CallGraph(g, hop_delay_ms=hop_delay_ms, sidecar_ms=sidecar_ms), rate_per_s, n_requests, seed)
    capacity = {
        "monolith": cores / total_s,
        "microservices": min(split[n] / ((work_ms[n] + (serialisation_ms if i else 0.0)) / 1000.0)
                             for i, n in enumerate(names)),
    }
    used = {"monolith": cores, "microservices": sum(split.values())}
    for label, res in (("monolith", mono), ("microservices", micro)):
        row = {"architecture": label, "cores": used[label], **latency_row(res),
               "capacity_per_s": capacity[label], "throughput_per_core": capacity[label] / used[label],
               "cost_usd_per_h": used[label] * core_usd_per_h}
        if slo_p99_ms is not None:
            row["meets_slo"] = bool(row["p99_ms"] <= slo_p99_ms)
        rows.append(row)
    return pd.DataFrame(rows).set_index("architecture")


def saga_outcomes(
    step_failure_probabilities: Mapping[str, float] | Sequence[float],
    compensation_failure_probability: float = 0.0,
    n_sagas: int = 20_000,
    step_ms: float = 5.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Terminal outcomes of a saga (e.g. reserve inventory → authorise payment → confirm).

    Each step fails independently with its probability. A failure of the first step leaves
    nothing to undo (``aborted``); a later failure compensates the completed steps in reverse
    order, each compensation failing with ``compensation_failure_probability`` (the saga is then
    ``stuck`` and needs an operator). Returns rows ``completed``, ``aborted``, ``compensated``,
    ``stuck`` with the simulated rate, its 95 % interval and the analytic probability (products
    of the step probabilities).
    """
    if isinstance(step_failure_probabilities, Mapping):
        steps = list(step_failure_probabilities.items())
    else:
        steps = [(f"step{i + 1}", p) for i, p in enumerate(step_failure_probabilities)]
    if not steps:
        raise ValueError("step_failure_probabilities: got none; valid: at least one step probability in [0, 1]")
    probs = [check_fraction(f"step_failure_probabilities[{name!r}]", p) for name, p in steps]
    q = check_fraction("compensation_failure_probability", compensation_failure_probability)
    check_int("n_sagas", n_sagas, 10)
    check_positive("step_ms", step_ms)
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    outcome = np.empty(n_sagas, dtype=object)
    duration = np.zeros(n_sagas)
    step_time = Exponential(step_ms / 1000.0)

    def saga(env, i):
        """One saga instance: forward steps, then compensations on failure."""
        start = env.now
        done = 0
        for p in probs:
            yield env.timeout(step_time.sample(rng, 1)[0])
            if rng.random() < p:
                break
            done += 1
        else:
            outcome[i] = "completed"
            duration[i] = env.now - start
            return
        if done == 0:
            outcome[i] = "aborted"
            duration[i] = env.now - start
            return
        for _ in range(done):
            yield env.timeout(step_time.sample(rng, 1)[0])
            if rng.random() < q:
                outcome[i] = "stuck"
                duration[i] = env.now - start
                return
        outcome[i] = "compensated"
        duration[i] = env.now - start

    def source(env):
        for i in range(n_sagas):
            env.process(saga(env, i))
            yield env.timeout(0.001)

    env.process(source(env))
    env.run()
    p_complete = math.prod(1 - p for p in probs)
    p_aborted = probs[0]
    p_comp = 0.0
    reach = 1 - probs[0]
    for k, p in enumerate(probs[1:], start=1):
        p_comp += reach * p * (1 - q) ** k  # fails at step k+1 after k successes; k compensations
        reach *= 1 - p
    analytic = {"completed": p_complete, "aborted": p_aborted, "compensated": p_comp,
                "stuck": 1 - p_complete - p_aborted - p_comp}
    rows = []
    for label in ("completed", "aborted", "compensated", "stuck"):
        hits = (outcome == label).astype(float)
        est = batch_means(hits, 20)
        rows.append({"outcome": label, "rate": est.value, "rate_low": est.low, "rate_high": est.high,
                     "analytic": analytic[label],
                     "mean_duration_ms": float(duration[outcome == label].mean() * 1000) if hits.any() else float("nan")})
    return pd.DataFrame(rows).set_index("outcome")


def sync_vs_async(
    rate_per_s: float = 50.0,
    api_ms: float = 2.0,
    downstream_ms: float = 15.0,
    downstream_servers: int = 1,
    broker_ms: float = 0.5,
    hop_delay_ms: float = 0.3,
    timeout_ms: float | None = 1000.0,
    n_requests: int = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    """User-facing latency and completion time of three integration styles with one downstream.

    * ``sync`` — the API calls the downstream over HTTP and waits;
    * ``request_reply`` — the API sends a request through the broker and waits for the reply;
    * ``async_events`` — the API publishes an event and answers 202 at once; the downstream
      consumes the event later. The user waits only for the API; the work completes after the
      broker and the downstream's queue.

    Make the downstream slow (``downstream_ms`` close to ``1000 × servers / rate``) to see the
    sync styles' p99 explode while the async user latency stays flat.
    """
    check_positive("rate_per_s", rate_per_s)
    for key, v in (("api_ms", api_ms), ("downstream_ms", downstream_ms), ("broker_ms", broker_ms)):
        check_positive(key, v)
    check_int("downstream_servers", downstream_servers)
    edge = {"timeout_ms": timeout_ms} if timeout_ms is not None else {}

    def graph(style):
        g = nx.DiGraph()
        g.add_node("api", service_time=Exponential(api_ms / 1000.0), servers=64)
        g.add_node("downstream", service_time=Exponential(downstream_ms / 1000.0), servers=downstream_servers)
        if style == "sync":
            g.add_edge("api", "downstream", **edge)
        elif style == "request_reply":
            g.add_node("broker", service_time=Exponential(broker_ms / 1000.0), servers=8)
            g.add_edge("api", "broker", **edge)
            g.add_edge("broker", "downstream")
        else:
            g.add_node("broker", service_time=Exponential(broker_ms / 1000.0), servers=8)
            g.add_edge("api", "broker")
            g.add_edge("broker", "downstream", mode="async")
        return g

    rows = []
    for style in ("sync", "request_reply", "async_events"):
        res = run_callgraph(CallGraph(graph(style), hop_delay_ms=hop_delay_ms), rate_per_s, n_requests, seed)
        row = {"style": style, **latency_row(res)}
        if style == "async_events":
            # completion = user path + broker hop + the downstream's own sojourn (M/M/c)
            down = run_queueing(QueueScenario(rate_per_s, Exponential(downstream_ms / 1000.0), downstream_servers,
                                              customers=n_requests), seed)
            row["completion_p99_ms"] = row["p99_ms"] + hop_delay_ms + down.p99_response_s.value * 1000.0
        else:
            row["completion_p99_ms"] = row["p99_ms"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("style")


def capacity_plan(
    rate_per_s: float,
    service=Exponential(0.02),
    slo_p99_ms: float = 200.0,
    pod_cpu_cores: float = 1.0,
    pod_memory_gib: float = 1.0,
    instance_types: Mapping[str, InstanceType] | Sequence[str] | None = None,
    purchase: str = "on_demand",
    max_replicas: int = 200,
    customers: int = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Cheapest replica count and instance type whose p99 latency meets the SLO.

    Each replica is one server of ``service`` (seconds). With exponential service the p99 comes
    from the M/M/c sojourn law; otherwise from a seeded simulation. Replicas pack onto nodes by
    CPU and memory. Returns one row per instance type, cheapest first (column ``best`` marks it).
    """
    check_positive("rate_per_s", rate_per_s)
    service = as_distribution(service, "service")
    check_positive("slo_p99_ms", slo_p99_ms)
    check_positive("pod_cpu_cores", pod_cpu_cores)
    check_positive("pod_memory_gib", pod_memory_gib)
    check_int("max_replicas", max_replicas)
    if instance_types is None:
        types = dict(PRICE_SHEET)
    elif isinstance(instance_types, Mapping):
        types = dict(instance_types)
    else:
        types = {}
        for name in instance_types:
            if name not in PRICE_SHEET:
                raise ValueError(f"instance_types: got {name!r}; valid: names from {sorted(PRICE_SHEET)}")
            types[name] = PRICE_SHEET[name]
    if service.mean_s * 1000.0 >= slo_p99_ms:
        raise ValueError(
            f"slo_p99_ms: got {slo_p99_ms}; valid: more than the mean service time ({service.mean_s * 1000:.4g} ms)"
        )

    def p99_ms(c: int) -> float:
        if rate_per_s * service.mean_s / c >= 1:
            return float("inf")
        if isinstance(service, Exponential):
            return theory.mmc_sojourn_percentile_s(rate_per_s, 1 / service.mean_s, c, 0.99) * 1000.0
        res = run_queueing(QueueScenario(rate_per_s, service, c, customers=customers), seed)
        return res.station.p99_sojourn_s.value * 1000.0

    c = max(1, math.floor(rate_per_s * service.mean_s) + 1)
    latency = p99_ms(c)
    while latency > slo_p99_ms and c < max_replicas:
        c += 1
        latency = p99_ms(c)
    if latency > slo_p99_ms:
        raise ValueError(
            f"max_replicas: got {max_replicas}; valid: more replicas, the SLO is not met with {max_replicas}"
        )
    rows = []
    for name, inst in types.items():
        per_node = int(min(inst.vcpu // pod_cpu_cores, inst.memory_gib // pod_memory_gib))
        if per_node < 1:
            continue
        nodes = math.ceil(c / per_node)
        rows.append({"instance_type": name, "replicas": c, "p99_ms": latency, "pods_per_node": per_node,
                     "nodes": nodes, "utilisation": rate_per_s * service.mean_s / c,
                     "cost_usd_per_h": nodes * inst.price_usd_per_h(purchase)})
    if not rows:
        raise ValueError(f"pod_cpu_cores: got {pod_cpu_cores}; valid: a pod size that fits one of the instance types")
    frame = pd.DataFrame(rows).sort_values(["cost_usd_per_h", "instance_type"]).reset_index(drop=True)
    frame["best"] = frame.index == 0
    return frame
