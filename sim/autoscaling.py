"""Autoscaling: the Kubernetes Horizontal Pod Autoscaler and a cluster autoscaler, in SimPy.

The HPA follows the Kubernetes algorithm: every ``sync_period_s`` it computes
``desired = ceil(current × metric / target)``; it does nothing while the ratio is within
``tolerance`` (10 %); scale-ups are limited by the default policy (at most double, or +4 pods,
per period); scale-downs take the highest recommendation of the last ``scale_down_window_s``
(the stabilisation window, 300 s by default). The metric is average CPU utilisation of the pods
relative to their CPU request; pods that are not ready yet count as 0 % (as Kubernetes does on
scale-up). New pods become ready after ``pod_start_s``.

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

    def __post_init__(self):
        check_positive("target_utilisation", self.target_utilisation)
        check_int("min_replicas", self.min_replicas)
        check_int("max_replicas", self.max_replicas, self.min_replicas)
        check_fraction("tolerance", self.tolerance)
        check_positive("sync_period_s", self.sync_period_s)
        check_nonnegative("scale_down_window_s", self.scale_down_window_s)
        check_positive("scale_up_percent", self.scale_up_percent)
        check_int("scale_up_pods", self.scale_up_pods)

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
    and ``pod_memory_gib``. With ``measurement_noise`` the HPA sees the rate counted over each
    sync period of Poisson arrivals, not the exact mean.
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


def simulate_autoscaling(sc: HPAScenario, seed: int = 0) -> AutoscalingResult:
    """Run an :class:`HPAScenario`; see :func:`sim.run`."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    hpa = sc.hpa
    cl = sc.cluster
    state = {"replicas": sc.initial_replicas, "ready": 0, "starting": 0, "pending": 0,
             "nodes_ready": cl.min_nodes if cl else 0, "nodes_starting": 0, "scale_events": 0,
             "utilisation": 0.0, "node_seconds": 0.0, "last_t": 0.0, "cancelled": 0}
    pods_per_node = (
        int(min(cl.node_cpu_cores // sc.pod_cpu_request_cores, cl.node_memory_gib // sc.pod_memory_gib))
        if cl else None
    )
    if cl and pods_per_node < 1:
        raise ValueError(
            f"pod_memory_gib: got {sc.pod_memory_gib}; valid: <= node_memory_gib ({cl.node_memory_gib})"
        )
    history: deque = deque()  # (time, recommendation) for the scale-down stabilisation window
    rows = []

    def account_nodes():
        now = env.now
        state["node_seconds"] += (state["nodes_ready"] + state["nodes_starting"]) * (now - state["last_t"])
        state["last_t"] = now

    def pod_start(env):
        """A scheduled pod (already counted as starting): container start-up, then ready."""
        yield env.timeout(sc.pod_start_s)
        if state["cancelled"]:  # scaled away while starting
            state["cancelled"] -= 1
            return
        state["starting"] -= 1
        state["ready"] += 1

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

    def scheduled_pods() -> int:
        return state["ready"] + state["starting"]

    def schedule_pending():
        """Place pending pods on ready nodes with room (first fit on identical pods)."""
        while state["pending"] > 0 and (cl is None or scheduled_pods() < state["nodes_ready"] * pods_per_node):
            state["pending"] -= 1
            state["starting"] += 1  # counted now: the process itself starts a moment later
            env.process(pod_start(env))

    def scale_to(n: int):
        current = state["replicas"]
        if n == current:
            return
        state["scale_events"] += 1
        state["replicas"] = n
        if n > current:
            state["pending"] += n - current
            schedule_pending()
            if cl is not None and state["pending"] > 0:
                room_coming = state["nodes_starting"] * pods_per_node
                missing = state["pending"] - room_coming
                new_nodes = math.ceil(missing / pods_per_node) if missing > 0 else 0
                total = state["nodes_ready"] + state["nodes_starting"]
                for _ in range(min(new_nodes, cl.max_nodes - total)):
                    start_node()
        else:
            drop = current - n
            for key in ("pending", "starting", "ready"):
                take = min(drop, state[key])
                state[key] -= take
                drop -= take
                if key == "starting":
                    state["cancelled"] += take

    def measured_demand_cores() -> float:
        rate = sc.rate_at(env.now)
        if sc.measurement_noise and rate > 0:
            rate = rng.poisson(rate * hpa.sync_period_s) / hpa.sync_period_s
        return rate * sc.cpu_s_per_request

    def controller(env):
        """The HPA control loop, once per sync period."""
        while True:
            yield env.timeout(hpa.sync_period_s)
            current = state["replicas"]
            ready = state["ready"]
            demand = measured_demand_cores()
            # average utilisation over all pods; pods not ready count as 0 %
            util = demand / (max(current, 1) * sc.pod_cpu_request_cores) if ready else 0.0
            state["utilisation"] = demand / (ready * sc.pod_cpu_request_cores) if ready else float("inf")
            if ready == 0:
                continue
            raw = hpa.recommend(current, util)
            now = env.now
            history.append((now, raw))
            while history and history[0][0] < now - hpa.scale_down_window_s:
                history.popleft()
            if raw > current:
                limit = max(math.ceil(current * (1 + hpa.scale_up_percent / 100.0)), current + hpa.scale_up_pods)
                desired = min(raw, limit, hpa.max_replicas)
            else:
                desired = min(current, max(r for _, r in history))
            scale_to(desired)

    def cluster_scale_down(env):
        """Remove nodes that stayed empty for the scale-down delay."""
        empty_since = None
        while True:
            yield env.timeout(hpa.sync_period_s)
            needed = max(cl.min_nodes, math.ceil((scheduled_pods() + state["pending"]) / pods_per_node))
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
            ready = state["ready"]
            demand = rate * sc.cpu_s_per_request
            rows.append({
                "t_s": env.now,
                "load_rate_per_s": rate,
                "replicas": state["replicas"],
                "ready": ready,
                "pending": state["pending"],
                "utilisation": demand / (ready * sc.pod_cpu_request_cores) if ready else float("nan"),
                "nodes": state["nodes_ready"] + state["nodes_starting"] if cl else float("nan"),
            })
            yield env.timeout(sc.record_every_s)

    state["pending"] = sc.initial_replicas
    schedule_pending()
    if cl is not None and state["pending"] > 0:
        for _ in range(min(math.ceil(state["pending"] / pods_per_node), cl.max_nodes - state["nodes_ready"])):
            start_node()
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
