"""Autoscaling: the Kubernetes Horizontal Pod Autoscaler and a cluster autoscaler, in SimPy.

The HPA follows the Kubernetes algorithm: every ``sync_period_s`` it computes
``desired = ceil(ready_pods × metric / target)``; it does nothing while the ratio is within
``tolerance`` (10 %); scale-ups are limited by the default policy (at most double, or +4 pods,
per period); scale-downs take the highest recommendation of the last ``scale_down_window_s``
(the stabilisation window, 300 s by default). New pods become ready after ``pod_start_s``.

The metric follows Kubernetes' pipeline, not the instantaneous load:

* CPU is a **rate over a window**: metrics-server scrapes every ``metric_resolution_s`` and
  reports each pod's usage averaged over the last ``metrics_window_s``;
* a pod's usage is **capped by its CPU limit** (``pod_cpu_limit_cores``); demand above the ready
  pods' capacity waits in a backlog (core-seconds) that keeps them at their limit after new
  capacity arrives;
* the replica calculator (``pkg/controller/podautoscaler/replica_calculator.go``) ignores a pod
  that is not ready, or — within ``cpu_initialization_period_s`` (300 s) of its start — whose
  sample window began before it became ready; on a scale-up the ignored pods count as 0 % and
  the recommendation is dropped if that flips its direction or lands within the tolerance.

Sources: Kubernetes docs, "Horizontal Pod Autoscaling" (algorithm details, readiness of pods,
``--horizontal-pod-autoscaler-cpu-initialization-period``); metrics-server docs
(``--metric-resolution``). The flapping-readiness rule of
``--horizontal-pod-autoscaler-initial-readiness-delay`` is not modelled (pods never turn unready).

The cluster autoscaler adds nodes when pods cannot be placed (bin packing, first fit) and the
nodes become usable after ``node_start_s``; nodes left empty for ``scale_down_delay_s`` go away.
Time is in seconds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd
import simpy

from . import theory
from ._validate import check_fraction, check_int, check_nonnegative, check_positive

__all__ = ["HPA", "ClusterAutoscaler", "HPAScenario", "AutoscalingResult", "load_steps", "simulate_autoscaling"]


@dataclass(frozen=True)
class HPA:
    """Horizontal Pod Autoscaler settings (Kubernetes defaults where Kubernetes has one)."""

    target_utilisation: float = 0.6
    min_replicas: int = 1
    max_replicas: int = 20
    tolerance: float = 0.1
    sync_period_s: float = 15.0
    scale_down_window_s: float = 300.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    cpu_initialization_period_s: float = 300.0

    def __post_init__(self):
        check_positive("target_utilisation", self.target_utilisation)
        check_int("min_replicas", self.min_replicas)
        check_int("max_replicas", self.max_replicas, self.min_replicas)
        check_fraction("tolerance", self.tolerance)
        check_positive("sync_period_s", self.sync_period_s)
        check_nonnegative("scale_down_window_s", self.scale_down_window_s)
        check_positive("scale_up_percent", self.scale_up_percent)
        check_int("scale_up_pods", self.scale_up_pods)
        check_nonnegative("cpu_initialization_period_s", self.cpu_initialization_period_s)

    def recommend(self, current: int, utilisation: float) -> int:
        """One raw recommendation (formula + tolerance + bounds), before rate limits."""
        return theory.hpa_desired_replicas(
            current, utilisation, self.target_utilisation, self.tolerance,
            self.min_replicas, self.max_replicas,
        )


@dataclass(frozen=True)
class ClusterAutoscaler:
    """Node pool that grows for unschedulable pods and shrinks when nodes stay empty."""

    node_cpu_cores: float = 4.0
    node_memory_gib: float = 16.0
    node_start_s: float = 120.0
    min_nodes: int = 1
    max_nodes: int = 50
    scale_down_delay_s: float = 600.0
    node_cost_usd_per_h: float = 0.192

    def __post_init__(self):
        check_positive("node_cpu_cores", self.node_cpu_cores)
        check_positive("node_memory_gib", self.node_memory_gib)
        check_nonnegative("node_start_s", self.node_start_s)
        check_int("min_nodes", self.min_nodes, 0)
        check_int("max_nodes", self.max_nodes, max(1, self.min_nodes))
        check_nonnegative("scale_down_delay_s", self.scale_down_delay_s)
        check_nonnegative("node_cost_usd_per_h", self.node_cost_usd_per_h)


def load_steps(*steps: tuple[float, float]) -> tuple:
    """A piecewise-constant load: ``load_steps((0, 50), (600, 200))`` is 50/s, then 200/s from 600 s."""
    if not steps:
        raise ValueError("steps: got none; valid: at least one (start_s, rate_per_s) pair")
    out = []
    for i, step in enumerate(steps):
        if not isinstance(step, (tuple, list)) or len(step) != 2:
            raise ValueError(f"steps[{i}]: got {step!r}; valid: a (start_s, rate_per_s) pair")
        check_nonnegative(f"steps[{i}].start_s", step[0])
        check_nonnegative(f"steps[{i}].rate_per_s", step[1])
        out.append((float(step[0]), float(step[1])))
    out.sort()
    return tuple(out)


@dataclass(frozen=True)
class HPAScenario:
    """A Deployment under an HPA (and optionally a cluster autoscaler) facing a load profile.

    ``load_rate_per_s`` is a constant or :func:`load_steps`; every request costs
    ``cpu_s_per_request`` CPU-seconds; a pod requests ``pod_cpu_request_cores`` (the HPA's 100 %)
    and ``pod_memory_gib`` and may use at most ``pod_cpu_limit_cores`` (None: no limit). With
    ``measurement_noise`` the arrivals of every ``tick_s`` are Poisson, not the exact mean. The
    metric pipeline (``metrics_window_s``, ``metric_resolution_s``) is described in the module
    docs; ``metrics_window_s=0`` reads the load of the last tick (the instantaneous model).
    """

    load_rate_per_s: float | tuple = 100.0
    cpu_s_per_request: float = 0.01
    pod_cpu_request_cores: float = 0.5
    pod_memory_gib: float = 0.5
    hpa: HPA = HPA()
    cluster: ClusterAutoscaler | None = None
    initial_replicas: int = 1
    pod_start_s: float = 20.0
    duration_s: float = 1800.0
    record_every_s: float = 15.0
    measurement_noise: bool = True
    pod_cpu_limit_cores: float | None = None
    metrics_window_s: float = 15.0
    metric_resolution_s: float = 15.0
    tick_s: float = 1.0

    def __post_init__(self):
        load = self.load_rate_per_s
        if isinstance(load, (tuple, list)):
            object.__setattr__(self, "load_rate_per_s", load_steps(*load))
        else:
            check_nonnegative("load_rate_per_s", load)
        check_positive("cpu_s_per_request", self.cpu_s_per_request)
        check_positive("pod_cpu_request_cores", self.pod_cpu_request_cores)
        check_positive("pod_memory_gib", self.pod_memory_gib)
        if not isinstance(self.hpa, HPA):
            raise ValueError(f"hpa: got {self.hpa!r}; valid: a sim.HPA")
        if self.cluster is not None and not isinstance(self.cluster, ClusterAutoscaler):
            raise ValueError(f"cluster: got {self.cluster!r}; valid: None or a sim.ClusterAutoscaler")
        if self.cluster is not None and self.pod_cpu_request_cores > self.cluster.node_cpu_cores:
            raise ValueError(
                f"pod_cpu_request_cores: got {self.pod_cpu_request_cores}; valid: <= node_cpu_cores "
                f"({self.cluster.node_cpu_cores}) or the pod never fits"
            )
        check_int("initial_replicas", self.initial_replicas)
        check_nonnegative("pod_start_s", self.pod_start_s)
        check_positive("duration_s", self.duration_s)
        check_positive("record_every_s", self.record_every_s)
        if self.pod_cpu_limit_cores is not None:
            check_positive("pod_cpu_limit_cores", self.pod_cpu_limit_cores)
            if self.pod_cpu_limit_cores < self.pod_cpu_request_cores:
                raise ValueError(f"pod_cpu_limit_cores: got {self.pod_cpu_limit_cores}; valid: None or "
                                 f">= pod_cpu_request_cores ({self.pod_cpu_request_cores})")
        check_nonnegative("metrics_window_s", self.metrics_window_s)
        check_positive("metric_resolution_s", self.metric_resolution_s)
        check_positive("tick_s", self.tick_s)

    def rate_at(self, t_s: float) -> float:
        """The offered load at time ``t_s``."""
        load = self.load_rate_per_s
        if not isinstance(load, tuple):
            return float(load)
        rate = 0.0
        for start, r in load:
            if t_s >= start:
                rate = r
        return rate

    def analytic_replicas(self, rate_per_s: float | None = None) -> int:
        """Where the HPA settles on a constant load: ceil(demand / (request × target)), bounded."""
        rate = self.rate_at(self.duration_s) if rate_per_s is None else rate_per_s
        demand_cores = rate * self.cpu_s_per_request
        n = math.ceil(demand_cores / (self.pod_cpu_request_cores * self.hpa.target_utilisation) - 1e-9)
        return min(max(n, self.hpa.min_replicas), self.hpa.max_replicas)

    def _run(self, seed: int = 0) -> "AutoscalingResult":
        return simulate_autoscaling(self, seed)


@dataclass(frozen=True)
class AutoscalingResult:
    """Time series of one autoscaling run and its headline numbers."""

    scenario: HPAScenario
    seed: int
    timeline: pd.DataFrame
    final_replicas: int
    analytic_replicas: int
    node_hours: float
    cost_usd: float
    scale_events: int

    def to_frame(self) -> pd.DataFrame:
        """The time series (one row per ``record_every_s``)."""
        return self.timeline


class _Pod:
    __slots__ = ("scheduled_at", "ready_at", "gone")

    def __init__(self):
        self.scheduled_at = None  # placed on a node, container starting
        self.ready_at = None
        self.gone = False


def replica_count(hpa: HPA, current: int, ready_util: list, ignored: int, missing: int) -> int | None:
    """Kubernetes' replica calculator for a utilisation target (``GetResourceReplicas``):
    ``ready_util`` are the utilisations (usage / request) of the pods with a usable sample,
    ``ignored`` the pods left out (not ready, or initialising), ``missing`` pods without a
    sample. Returns the recommendation before bounds and rate limits, or None (no metrics)."""
    if not ready_util:
        return None
    target, tol = hpa.target_utilisation, hpa.tolerance
    ratio = sum(ready_util) / len(ready_util) / target
    rebalance_ignored = ignored > 0 and ratio > 1.0
    if not rebalance_ignored and missing == 0:
        if abs(ratio - 1.0) <= tol:
            return current
        return math.ceil(ratio * len(ready_util) - 1e-9)
    utils = list(ready_util)
    if missing:
        utils += [0.0 if ratio > 1.0 else 1.0] * missing  # missing: 0 % on scale-up, 100 % on scale-down
    if rebalance_ignored:
        utils += [0.0] * ignored
    new_ratio = sum(utils) / len(utils) / target
    if abs(new_ratio - 1.0) <= tol or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
        return current
    new = math.ceil(new_ratio * len(utils) - 1e-9)
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return current
    return new


def simulate_autoscaling(sc: HPAScenario, seed: int = 0) -> AutoscalingResult:
    """Run an :class:`HPAScenario`; see :func:`sim.run`."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    hpa = sc.hpa
    cl = sc.cluster
    state = {"replicas": sc.initial_replicas, "nodes_ready": cl.min_nodes if cl else 0, "nodes_starting": 0,
             "scale_events": 0, "node_seconds": 0.0, "last_t": 0.0, "backlog": 0.0,
             "measured": float("nan"), "served": 0.0}
    pods: list[_Pod] = []
    pods_per_node = (
        int(min(cl.node_cpu_cores // sc.pod_cpu_request_cores, cl.node_memory_gib // sc.pod_memory_gib))
        if cl else None
    )
    if cl and pods_per_node < 1:
        raise ValueError(
            f"pod_memory_gib: got {sc.pod_memory_gib}; valid: <= node_memory_gib ({cl.node_memory_gib})"
        )
    history: deque = deque()  # (time, recommendation) for the scale-down stabilisation window
    usage: deque = deque()  # (tick end time, CPU cores used per ready pod during the tick)
    keep_s = sc.metrics_window_s + sc.metric_resolution_s + 2 * sc.tick_s
    limit = sc.pod_cpu_limit_cores if sc.pod_cpu_limit_cores is not None else math.inf
    rows = []

    def counts():
        ready = sum(1 for p in pods if p.ready_at is not None)
        starting = sum(1 for p in pods if p.ready_at is None and p.scheduled_at is not None)
        return ready, starting, len(pods) - ready - starting

    def account_nodes():
        now = env.now
        state["node_seconds"] += (state["nodes_ready"] + state["nodes_starting"]) * (now - state["last_t"])
        state["last_t"] = now

    def pod_start(env, pod):
        """A scheduled pod: container start-up, then ready."""
        yield env.timeout(sc.pod_start_s)
        if not pod.gone:
            pod.ready_at = env.now

    def node_start(env):
        """A new node: boot and join, then pods can land on it."""
        yield env.timeout(cl.node_start_s)
        account_nodes()
        state["nodes_starting"] -= 1
        state["nodes_ready"] += 1
        schedule_pending()

    def start_node():
        account_nodes()
        state["nodes_starting"] += 1
        env.process(node_start(env))

    def schedule_pending():
        """Place pending pods on ready nodes with room (first fit on identical pods)."""
        placed = sum(1 for p in pods if p.scheduled_at is not None)
        for pod in pods:
            if pod.scheduled_at is None and (cl is None or placed < state["nodes_ready"] * pods_per_node):
                pod.scheduled_at = env.now
                placed += 1
                env.process(pod_start(env, pod))

    def scale_to(n: int):
        current = state["replicas"]
        if n == current:
            return
        state["scale_events"] += 1
        state["replicas"] = n
        if n > current:
            pods.extend(_Pod() for _ in range(n - current))
            schedule_pending()
            pending = sum(1 for p in pods if p.scheduled_at is None)
            if cl is not None and pending > 0:
                room_coming = state["nodes_starting"] * pods_per_node
                missing = pending - room_coming
                new_nodes = math.ceil(missing / pods_per_node) if missing > 0 else 0
                total = state["nodes_ready"] + state["nodes_starting"]
                for _ in range(min(new_nodes, cl.max_nodes - total)):
                    start_node()
        else:
            # Kubernetes deletes unscheduled pods first, then not-ready ones, then the newest
            order = sorted(pods, key=lambda p: (p.scheduled_at is not None, p.ready_at is not None,
                                                -(p.ready_at or p.scheduled_at or 0.0)))
            for pod in order[: current - n]:
                pod.gone = True
                pods.remove(pod)

    def load(env):
        """The CPU work of every tick: demand, what the ready pods can serve (limit), backlog."""
        while True:
            yield env.timeout(sc.tick_s)
            rate = sc.rate_at(env.now - sc.tick_s)
            if sc.measurement_noise and rate > 0:
                rate = rng.poisson(rate * sc.tick_s) / sc.tick_s
            demand = rate * sc.cpu_s_per_request
            ready = sum(1 for p in pods if p.ready_at is not None and p.ready_at <= env.now - sc.tick_s)
            if ready:  # requests queue at the pods; with no ready pod they fail (no endpoints)
                served = min(demand + state["backlog"] / sc.tick_s, ready * limit)
                state["backlog"] = max(0.0, state["backlog"] + (demand - served) * sc.tick_s)
            else:
                served = 0.0
            state["served"] = served
            usage.append((env.now, served / ready if ready else 0.0))
            while usage and usage[0][0] < env.now - keep_s:
                usage.popleft()

    def pod_sample(pod, scrape_t):
        """(usable, utilisation) of one pod's latest metrics-server sample."""
        window_start = scrape_t - max(sc.metrics_window_s, sc.tick_s)
        since = max(window_start, pod.ready_at)
        values = [u for t, u in usage if since < t <= scrape_t]
        if not values:
            return None
        return sum(values) / len(values) / sc.pod_cpu_request_cores, window_start

    def controller(env):
        """The HPA control loop, once per sync period."""
        while True:
            yield env.timeout(hpa.sync_period_s)
            yield env.timeout(0)  # after the load tick of this instant: its usage is in the scrape
            now = env.now
            current = state["replicas"]
            scrape_t = math.floor(now / sc.metric_resolution_s + 1e-9) * sc.metric_resolution_s
            ready_util, ignored, missing = [], 0, 0
            for pod in pods:
                if pod.ready_at is None:
                    ignored += 1
                    continue
                sample = pod_sample(pod, scrape_t)
                if sample is None:
                    missing += 1
                    continue
                util, window_start = sample
                initialising = pod.scheduled_at + hpa.cpu_initialization_period_s > now
                if initialising and window_start < pod.ready_at:
                    ignored += 1  # sample taken (partly) before the pod was ready
                    continue
                ready_util.append(util)
            state["measured"] = sum(ready_util) / len(ready_util) if ready_util else float("nan")
            raw = replica_count(hpa, current, ready_util, ignored, missing)
            if raw is None:
                continue
            raw = min(max(raw, hpa.min_replicas), hpa.max_replicas)
            history.append((now, raw))
            while history and history[0][0] < now - hpa.scale_down_window_s:
                history.popleft()
            if raw > current:
                limit_up = max(math.ceil(current * (1 + hpa.scale_up_percent / 100.0)), current + hpa.scale_up_pods)
                desired = min(raw, limit_up, hpa.max_replicas)
            else:
                desired = min(current, max(r for _, r in history))
            scale_to(desired)

    def cluster_scale_down(env):
        """Remove nodes that stayed empty for the scale-down delay."""
        empty_since = None
        while True:
            yield env.timeout(hpa.sync_period_s)
            needed = max(cl.min_nodes, math.ceil(len(pods) / pods_per_node))
            if state["nodes_ready"] > needed:
                if empty_since is None:
                    empty_since = env.now
                elif env.now - empty_since >= cl.scale_down_delay_s:
                    account_nodes()
                    state["nodes_ready"] = needed
                    empty_since = None
            else:
                empty_since = None

    def recorder(env):
        while True:
            rate = sc.rate_at(env.now)
            ready, _, pending = counts()
            demand = rate * sc.cpu_s_per_request
            rows.append({
                "t_s": env.now,
                "load_rate_per_s": rate,
                "replicas": state["replicas"],
                "ready": ready,
                "pending": pending,
                "utilisation": demand / (ready * sc.pod_cpu_request_cores) if ready else float("nan"),
                "measured_utilisation": state["measured"],
                "served_utilisation": state["served"] / (ready * sc.pod_cpu_request_cores) if ready else float("nan"),
                "backlog_core_s": state["backlog"],
                "nodes": state["nodes_ready"] + state["nodes_starting"] if cl else float("nan"),
            })
            yield env.timeout(sc.record_every_s)
            yield env.timeout(0)  # after the HPA's decision of this instant
            yield env.timeout(0)

    pods.extend(_Pod() for _ in range(sc.initial_replicas))
    schedule_pending()
    pending = sum(1 for p in pods if p.scheduled_at is None)
    if cl is not None and pending > 0:
        for _ in range(min(math.ceil(pending / pods_per_node), cl.max_nodes - state["nodes_ready"])):
            start_node()
    for pod in pods:  # the Deployment existed before the run: its first pods are ready and settled
        if pod.scheduled_at is not None:
            pod.scheduled_at = -hpa.cpu_initialization_period_s - sc.pod_start_s
    env.process(load(env))
    env.process(controller(env))
    env.process(recorder(env))
    if cl is not None:
        env.process(cluster_scale_down(env))
    env.run(until=sc.duration_s)
    account_nodes()
    node_hours = state["node_seconds"] / 3600.0 if cl else 0.0
    return AutoscalingResult(
        scenario=sc,
        seed=int(seed),
        timeline=pd.DataFrame(rows),
        final_replicas=state["replicas"],
        analytic_replicas=sc.analytic_replicas(),
        node_hours=node_hours,
        cost_usd=node_hours * cl.node_cost_usd_per_h if cl else 0.0,
        scale_events=state["scale_events"],
    )
