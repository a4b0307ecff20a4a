"""A service call graph as a SimPy model.

The scenario is a ``networkx.DiGraph``:

* **nodes** are services with ``service_time`` (a :class:`sim.Distribution` or a mean in
  seconds), ``servers`` per replica (default 1), ``replicas`` (default 1), ``load_balancer``
  (a policy from :mod:`sim.loadbalancing` or its name; default round robin), ``error_rate``
  (probability that the service itself fails a request; a constant or ``((start_s, rate), …)``
  steps for an outage that starts or ends within the run), ``replica_error_rate`` and
  ``replica_service_time`` (one value per replica, to model a single faulty or slow replica),
  ``fanout`` (``"sequential"`` or ``"parallel"`` sync calls) and an optional ``rate_limit``
  (:class:`sim.TokenBucket`);
* **edges** are calls with ``mode`` (``"sync"`` — the caller waits —, ``"async"`` — an event,
  fire and forget — or ``"mirror"`` — Istio's ``mirror``: a copy of the request to a shadow
  service for a ``probability`` share of the visits (``mirrorPercentage`` / 100); it costs the
  shadow's capacity, its answer is dropped and never fails or delays the caller), ``calls`` (fan-out: calls per visit), ``probability`` (of making them),
  ``hop_delay_ms`` (network, each way), ``sidecar_ms`` (per sidecar; a meshed hop passes two
  sidecars each way), ``timeout_ms`` (per attempt: Istio's ``retries.perTryTimeout``),
  ``route_timeout_ms`` (the whole call with its retries: Istio's route ``timeout``; when it fires
  the pending attempt is abandoned and no retry follows), ``client_proxies`` (that many calling
  sidecars, each balancing with its own view of the replicas' requests in flight, as Envoy's
  least-request does per proxy; a call leaves from one of them at random), ``retry`` (:class:`sim.Retry`), ``breaker``
  (:class:`sim.CircuitBreaker` or :class:`sim.ApplicationBreaker`), ``bulkhead``
  (:class:`sim.Bulkhead`, rejects at once), and the mesh's ``outlier_detection``
  (:class:`sim.OutlierDetection`: the caller's proxy ejects single replicas) and
  ``connection_pool`` (:class:`sim.ConnectionPool`: requests queue for a connection, then 503).

With ``CallGraph(cpu=sim.SharedCPU(cores=2))`` every replica is a process on one machine whose
cores the replicas share (:mod:`sim.cpu`): a visit's CPU work (``service_time`` × the node's
``cpu_fraction``, default 1) runs at the process's fair share instead of on a core of its own
(a node's ``process_cores`` lets a multi-threaded process use more than one core).

A visit holds a server only for the service's own work; downstream calls happen after it
(event-loop services, not thread-per-request). A service fails a request if its own error draw
fails or a sync call fails after its retries. Time inside the model is in seconds; results are
reported in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import simpy

from ._validate import check_fraction, check_int, check_nonnegative, check_positive
from .distributions import Stream, UniformStream, as_distribution
from .loadbalancing import make_load_balancer
from .ratelimit import RATE_LIMITERS
from .cpu import SharedCPU
from .resilience import ApplicationBreaker, Bulkhead, CircuitBreaker, ConnectionPool, OutlierDetection, Retry
from .results import CallGraphResult, batch_means, percentile_estimate
from .servers import Server, start

__all__ = ["CallGraph", "run_callgraph", "chain_graph"]

_NODE_KEYS = {"service_time", "servers", "replicas", "load_balancer", "error_rate", "fanout",
              "rate_limit", "label", "replica_error_rate", "replica_service_time", "cpu_fraction",
              "process_cores"}
_EDGE_KEYS = {"mode", "calls", "probability", "hop_delay_ms", "sidecar_ms", "timeout_ms", "retry",
              "breaker", "bulkhead", "label", "outlier_detection", "connection_pool", "route_timeout_ms",
              "client_proxies"}


@dataclass(frozen=True)
class CallGraph:
    """A call-graph scenario: the graph, its entry service, default per-hop delays and load.

    ``hop_delay_ms`` and ``sidecar_ms`` are defaults for edges that do not set their own
    (``sidecar_ms=0`` is "no mesh"). ``rate_per_s`` and ``n_requests`` are the default open-loop
    Poisson load for :func:`sim.run`. ``cpu`` (a :class:`sim.SharedCPU`) puts every replica on one
    machine's shared cores.
    """

    graph: nx.DiGraph
    entry: str | None = None
    hop_delay_ms: float = 0.0
    sidecar_ms: float = 0.0
    rate_per_s: float = 100.0
    n_requests: int = 10_000
    warmup_fraction: float = 0.05
    batches: int = 20
    cpu: SharedCPU | None = None

    def __post_init__(self):
        g = self.graph
        if not isinstance(g, nx.DiGraph) or isinstance(g, nx.MultiDiGraph):
            raise ValueError(f"graph: got {type(g).__name__}; valid: a networkx.DiGraph")
        if g.number_of_nodes() == 0:
            raise ValueError("graph: got an empty graph; valid: at least one service node")
        if not nx.is_directed_acyclic_graph(g):
            cycle = nx.find_cycle(g)
            raise ValueError(f"graph: got a call cycle {cycle}; valid: a directed acyclic graph")
        for n, data in g.nodes(data=True):
            unknown = set(data) - _NODE_KEYS
            if unknown:
                raise ValueError(f"graph node {n!r}: got unknown attributes {sorted(unknown)}; valid: {sorted(_NODE_KEYS)}")
            if "service_time" not in data:
                raise ValueError(f"graph node {n!r}: got no 'service_time'; valid: a sim.Distribution or mean seconds > 0")
            as_distribution(data["service_time"], f"service_time[{n!r}]")
            check_int(f"servers[{n!r}]", data.get("servers", 1))
            check_int(f"replicas[{n!r}]", data.get("replicas", 1))
            _error_steps(data.get("error_rate", 0.0), f"error_rate[{n!r}]")
            if data.get("fanout", "sequential") not in ("sequential", "parallel"):
                raise ValueError(f"fanout[{n!r}]: got {data['fanout']!r}; valid: 'sequential' or 'parallel'")
            make_load_balancer(data.get("load_balancer", "round_robin"))
            check_fraction(f"cpu_fraction[{n!r}]", data.get("cpu_fraction", 1.0))
            if data.get("process_cores") is not None:
                check_positive(f"process_cores[{n!r}]", data["process_cores"])
            replicas = data.get("replicas", 1)
            for key in ("replica_error_rate", "replica_service_time"):
                per = data.get(key)
                if per is None:
                    continue
                if not isinstance(per, (tuple, list)) or len(per) != replicas:
                    raise ValueError(f"{key}[{n!r}]: got {per!r}; valid: one value per replica ({replicas})")
                for i, v in enumerate(per):
                    if key == "replica_error_rate":
                        check_fraction(f"{key}[{n!r}][{i}]", v)
                    else:
                        as_distribution(v, f"{key}[{n!r}][{i}]")
            rl = data.get("rate_limit")
            if rl is not None and not isinstance(rl, RATE_LIMITERS):
                raise ValueError(f"rate_limit[{n!r}]: got {rl!r}; valid: None or a sim.TokenBucket, "
                                 "sim.KongRateLimiting or sim.EnvoyLocalRateLimit")
        for a, b, data in g.edges(data=True):
            name = f"{a}->{b}"
            unknown = set(data) - _EDGE_KEYS
            if unknown:
                raise ValueError(f"graph edge {name}: got unknown attributes {sorted(unknown)}; valid: {sorted(_EDGE_KEYS)}")
            if data.get("mode", "sync") not in ("sync", "async", "mirror"):
                raise ValueError(f"mode[{name}]: got {data['mode']!r}; valid: 'sync', 'async' or 'mirror'")
            check_int(f"calls[{name}]", data.get("calls", 1))
            check_fraction(f"probability[{name}]", data.get("probability", 1.0))
            check_nonnegative(f"hop_delay_ms[{name}]", data.get("hop_delay_ms", self.hop_delay_ms))
            check_nonnegative(f"sidecar_ms[{name}]", data.get("sidecar_ms", self.sidecar_ms))
            for key in ("timeout_ms", "route_timeout_ms"):
                if data.get(key) is not None:
                    check_positive(f"{key}[{name}]", data[key])
            if data.get("client_proxies") is not None:
                check_int(f"client_proxies[{name}]", data["client_proxies"])
            for key, cls in (("retry", Retry), ("breaker", (CircuitBreaker, ApplicationBreaker)),
                             ("bulkhead", Bulkhead), ("outlier_detection", OutlierDetection),
                             ("connection_pool", ConnectionPool)):
                v = data.get(key)
                if v is not None and not isinstance(v, cls):
                    names = " or ".join(f"sim.{c.__name__}" for c in (cls if isinstance(cls, tuple) else (cls,)))
                    raise ValueError(f"{key}[{name}]: got {v!r}; valid: None or a {names}")
        roots = [n for n in g.nodes if g.in_degree(n) == 0]
        entry = self.entry
        if entry is None:
            if len(roots) != 1:
                raise ValueError(f"entry: got None with {len(roots)} root services {roots}; valid: name the entry service")
            object.__setattr__(self, "entry", roots[0])
        elif entry not in g:
            raise ValueError(f"entry: got {entry!r}; valid: one of {sorted(map(str, g.nodes))}")
        check_nonnegative("hop_delay_ms", self.hop_delay_ms)
        check_nonnegative("sidecar_ms", self.sidecar_ms)
        object.__setattr__(self, "rate_per_s", _rate(self.rate_per_s))
        check_int("n_requests", self.n_requests, 10)
        check_fraction("warmup_fraction", self.warmup_fraction, closed_high=False)
        check_int("batches", self.batches, 2)
        if self.cpu is not None and not isinstance(self.cpu, SharedCPU):
            raise ValueError(f"cpu: got {self.cpu!r}; valid: None or a sim.SharedCPU")

    def with_mesh(self, sidecar_ms: float) -> "CallGraph":
        """The same scenario with every hop passing sidecars of ``sidecar_ms`` each."""
        g = self.graph.copy()
        for _, _, d in g.edges(data=True):
            d.pop("sidecar_ms", None)
        return _replace(self, graph=g, sidecar_ms=sidecar_ms)

    def _run(self, seed: int = 0, rate_per_s: float | None = None, n_requests: int | None = None):
        return run_callgraph(self, rate_per_s, n_requests, seed)


def _rate(value):
    """``rate_per_s`` as a constant or ``((start_s, rate), …)`` steps (the last one lasts)."""
    if isinstance(value, (tuple, list)):
        from .autoscaling import load_steps

        steps = load_steps(*value)
        if steps[-1][1] <= 0:
            raise ValueError(f"rate_per_s: got {value!r}; valid: steps whose last rate is > 0")
        return steps
    return check_positive("rate_per_s", value)


def _step_arrivals(steps, n: int, rng) -> np.ndarray:
    """``n`` Poisson arrival times under a piecewise-constant rate (memoryless: restart each step)."""
    out = np.empty(n)
    i, t = 0, 0.0
    for k, (start, r) in enumerate(steps):
        t = max(t, start)
        end = steps[k + 1][0] if k + 1 < len(steps) else np.inf
        if r <= 0:
            continue
        while i < n:
            t_next = t + rng.exponential(1.0 / r)
            if t_next >= end:
                t = end
                break
            out[i] = t = t_next
            i += 1
        if i >= n:
            break
    return out


def _error_steps(value, name: str):
    """``error_rate`` as a constant or ``((start_s, rate), …)`` steps (an outage onset)."""
    if isinstance(value, (tuple, list)):
        from .autoscaling import load_steps

        steps = load_steps(*value)
        for i, (_, r) in enumerate(steps):
            check_fraction(f"{name}[{i}].rate", r)
        return steps
    return check_fraction(name, value)


def _step_value(steps, now: float) -> float:
    value = 0.0
    for start, v in steps:
        if now < start:
            break
        value = v
    return value


def _replace(cg: CallGraph, **changes) -> CallGraph:
    fields = {k: getattr(cg, k) for k in CallGraph.__dataclass_fields__}
    fields.update(changes)
    return CallGraph(**fields)


def chain_graph(services: int, service_time_s: float = 0.002, **edge_attrs: Any) -> nx.DiGraph:
    """A straight chain ``svc0 → svc1 → …`` of sync calls (handy for exercises)."""
    check_int("services", services)
    g = nx.DiGraph()
    for i in range(services):
        g.add_node(f"svc{i}", service_time=service_time_s)
        if i:
            g.add_edge(f"svc{i - 1}", f"svc{i}", **edge_attrs)
    return g


_EDGE_COLUMNS = ["edge", "mode", "calls", "attempts", "retries", "timeouts", "failed", "short_circuited",
                 "bulkhead_rejected", "budget_exhausted", "breaker_state", "pool_overflow", "ejections",
                 "no_healthy_upstream", "route_timeouts", "retry_overflow", "mirrored"]


class _Deadline:
    """Timer callback: interrupt the waiting caller unless the callee already answered."""

    __slots__ = ("callee", "caller")

    def __init__(self, callee, caller):
        self.callee = callee
        self.caller = caller

    def __call__(self, _event):
        if not self.callee.triggered:
            self.caller.interrupt("timeout")


class _Node:
    __slots__ = ("name", "service", "resources", "inflight", "picker", "error_rate", "parallel",
                 "limiter", "sync_edges", "async_edges", "visits", "errors", "rejected", "busy_s",
                 "capacity", "replica_errors", "replica_service", "error_steps", "cpu_fraction", "process_cores")


class _Edge:
    __slots__ = ("src", "dst", "calls", "probability", "delay_s", "timeout_s", "retry", "attempts",
                 "budget", "breaker", "bulkhead", "n_calls", "n_attempts", "n_retries", "n_timeouts",
                 "n_failed", "n_short_circuited", "n_bulkhead_rejected", "n_budget_exhausted",
                 "n_skipped", "is_async", "plain", "outlier", "pool", "pool_spec", "n_pool_overflow",
                 "n_no_healthy", "pick_host", "label", "route_timeout_s", "n_route_timeouts", "proxies",
                 "max_retries", "retries_out", "n_retry_overflow", "mirror_percent", "n_mirrored")


def run_callgraph(
    scenario, rate_per_s: float | None = None, n_requests: int | None = None, seed: int = 0
) -> CallGraphResult:
    """Open-loop Poisson requests at ``rate_per_s`` into the entry service; see module docs.

    ``scenario`` is a :class:`CallGraph` or a bare DiGraph (wrapped with defaults).
    """
    cg = scenario if isinstance(scenario, CallGraph) else CallGraph(scenario)
    rate = cg.rate_per_s if rate_per_s is None else _rate(rate_per_s)
    n_req = cg.n_requests if n_requests is None else check_int("n_requests", n_requests, 10)
    seed = int(seed)
    g = cg.graph
    names = list(g.nodes)
    seq = np.random.SeedSequence(seed)
    rngs = [np.random.default_rng(s) for s in seq.spawn(2 + 2 * len(names))]
    uniform = UniformStream(rngs[1])
    env = simpy.Environment()
    timeout = env.timeout
    process = env.process

    nodes: dict[Any, _Node] = {}
    for i, name in enumerate(names):
        d = g.nodes[name]
        nd = _Node()
        nd.name = name
        nd.service = Stream(as_distribution(d["service_time"], "service_time"), rngs[2 + i])
        replicas = d.get("replicas", 1)
        servers = d.get("servers", 1)
        nd.resources = [Server(env, servers) for _ in range(replicas)]
        nd.capacity = replicas * servers
        nd.inflight = [0] * replicas
        nd.picker = (make_load_balancer(d.get("load_balancer", "round_robin"))
                     .new_state(replicas, rngs[2 + len(names) + i]) if replicas > 1 else None)
        er = _error_steps(d.get("error_rate", 0.0), "error_rate")
        nd.error_steps = er if isinstance(er, tuple) else None
        nd.error_rate = 0.0 if nd.error_steps else float(er)
        per = d.get("replica_error_rate")
        nd.replica_errors = [float(x) for x in per] if per is not None else None
        per = d.get("replica_service_time")
        nd.replica_service = ([Stream(as_distribution(x, "replica_service_time"), rngs[2 + i]) for x in per]
                              if per is not None else None)
        nd.parallel = d.get("fanout", "sequential") == "parallel"
        rl = d.get("rate_limit")
        nd.limiter = rl.new_state() if rl is not None else None
        nd.sync_edges, nd.async_edges = [], []
        nd.visits = nd.errors = nd.rejected = 0
        nd.busy_s = 0.0
        nd.cpu_fraction = float(d.get("cpu_fraction", 1.0))
        nd.process_cores = d.get("process_cores")
        nodes[name] = nd
    machine = cg.cpu.machine(env) if cg.cpu is not None else None

    def work_on(nd: _Node, replica: int, work: float):
        """The visit's own work on the shared machine: CPU, then the off-CPU rest."""
        on_cpu = work * nd.cpu_fraction
        yield machine.run((nd.name, replica), on_cpu, nd.process_cores)
        if work > on_cpu:
            yield timeout(work - on_cpu)

    edges: list[_Edge] = []
    retry_times: list = []
    for a, b, d in g.edges(data=True):
        e = _Edge()
        e.src, e.dst = nodes[a], nodes[b]
        e.label = f"{a}->{b}"
        e.is_async = d.get("mode", "sync") in ("async", "mirror")  # a mirror is fire and forget too
        e.mirror_percent = 100.0 * float(d.get("probability", 1.0)) if d.get("mode") == "mirror" else None
        e.n_mirrored = 0
        e.calls = d.get("calls", 1)
        e.probability = float(d.get("probability", 1.0))
        hop = d.get("hop_delay_ms", cg.hop_delay_ms)
        side = d.get("sidecar_ms", cg.sidecar_ms)
        e.delay_s = (hop + 2.0 * side) / 1000.0  # one way: network + client and server sidecars
        t = d.get("timeout_ms")
        e.timeout_s = t / 1000.0 if t is not None else None
        e.retry = d.get("retry")
        e.attempts = e.retry.attempts if e.retry else 1
        e.budget = e.retry.new_budget() if e.retry else None
        br = d.get("breaker")
        e.breaker = br.new_state(f"{a}->{b}") if br is not None else None
        bh = d.get("bulkhead")
        e.bulkhead = bh.new_state() if bh is not None else None
        od = d.get("outlier_detection")
        e.outlier = od.new_state(len(e.dst.resources), f"{a}->{b}") if od is not None else None
        e.pool_spec = d.get("connection_pool")
        e.pool = Server(env, e.pool_spec.max_connections) if e.pool_spec is not None else None
        e.pick_host = len(e.dst.resources) > 1 and (
            e.outlier is not None or (e.retry is not None and e.retry.retry_other_host))
        e.n_pool_overflow = e.n_no_healthy = e.n_route_timeouts = e.n_retry_overflow = 0
        e.max_retries = e.pool_spec.max_retries if e.pool_spec is not None else None
        e.retries_out = [0]
        rt = d.get("route_timeout_ms")
        e.route_timeout_s = rt / 1000.0 if rt is not None else None
        k = d.get("client_proxies")
        e.proxies = None
        if k is not None and len(e.dst.resources) > 1:
            spec = make_load_balancer(g.nodes[b].get("load_balancer", "round_robin"))
            n_dst = len(e.dst.resources)
            e.proxies = [(spec.new_state(n_dst, np.random.default_rng(rngs[2 + len(names) + names.index(b)].integers(2**32))),
                          [0] * n_dst) for _ in range(k)]
            e.pick_host = True
        e.plain = (e.timeout_s is None and e.retry is None and br is None and bh is None
                   and e.outlier is None and e.pool is None and e.route_timeout_s is None and e.proxies is None)
        e.n_calls = e.n_attempts = e.n_retries = e.n_timeouts = e.n_failed = 0
        e.n_short_circuited = e.n_bulkhead_rejected = e.n_budget_exhausted = e.n_skipped = 0
        (e.src.async_edges if e.is_async else e.src.sync_edges).append(e)
        edges.append(e)

    def visit(nd: _Node, replica: int | None = None):
        """One request inside one service: admission, queue, work, then its downstream calls.
        ``replica`` is the replica a caller's proxy chose; otherwise the service's balancer picks."""
        nd.visits += 1
        if nd.limiter is not None and not nd.limiter.allow(env.now):
            nd.rejected += 1
            return False
        picker = nd.picker
        if picker is None:
            replica = 0
            work = nd.service.next() if nd.replica_service is None else nd.replica_service[0].next()
            with nd.resources[0].request() as req:
                yield req
                if machine is None:
                    yield timeout(work)
                else:
                    yield from work_on(nd, 0, work)
        else:  # several replicas: the load balancer needs the requests in flight per replica
            inflight = nd.inflight
            if replica is None:
                replica = picker.pick(inflight)
            work = nd.service.next() if nd.replica_service is None else nd.replica_service[replica].next()
            inflight[replica] += 1
            with nd.resources[replica].request() as req:
                yield req
                if machine is None:
                    yield timeout(work)
                else:
                    yield from work_on(nd, replica, work)
            inflight[replica] -= 1
        nd.busy_s += work
        error_rate = nd.error_rate if nd.replica_errors is None else nd.replica_errors[replica]
        if nd.error_steps is not None:
            error_rate = _step_value(nd.error_steps, env.now)
        if error_rate and uniform.next() < error_rate:
            nd.errors += 1
            return False
        for e in nd.async_edges:
            if e.probability >= 1.0 or uniform.next() < e.probability:
                if e.mirror_percent is not None:
                    e.n_mirrored += e.calls
                for _ in range(e.calls):
                    process(call(e))
            else:
                e.n_skipped += 1
        if not nd.sync_edges:
            return True
        if nd.parallel:
            procs = []
            for e in nd.sync_edges:
                if e.probability >= 1.0 or uniform.next() < e.probability:
                    procs.extend(process(call(e)) for _ in range(e.calls))
                else:
                    e.n_skipped += 1
            if procs:
                yield env.all_of(procs)
                for p in procs:
                    if not p.value:
                        return False
            return True
        for e in nd.sync_edges:
            if e.probability >= 1.0 or uniform.next() < e.probability:
                for _ in range(e.calls):
                    ok = yield from call(e)
                    if not ok:
                        return False
            else:
                e.n_skipped += 1
        return True

    def remote(e: _Edge, replica: int | None = None):
        """The callee's side of one attempt: request hop, the visit, response hop."""
        delay = e.delay_s
        if delay:
            yield timeout(delay)
            ok = yield from visit(e.dst, replica)
            yield timeout(delay)
            return ok
        return (yield from visit(e.dst, replica))

    def choose_host(e: _Edge, tried: list, proxy=None) -> int | None:
        """The caller's proxy picks a replica: outlier-ejected hosts excluded (unless in panic),
        hosts already tried excluded when the retry policy asks for another host. -1: no host."""
        dst = e.dst
        allowed = e.outlier.allowed(env.now) if e.outlier is not None else None
        if allowed is not None and not allowed:
            return -1
        candidates = allowed if allowed is not None else range(len(dst.resources))
        if tried and e.retry is not None and e.retry.retry_other_host:
            fresh = [h for h in candidates if h not in tried]
            candidates = fresh or candidates
        candidates = list(candidates)
        picker, inflight = (proxy if proxy is not None else (dst.picker, dst.inflight))
        if len(candidates) == len(dst.resources):
            return picker.pick(inflight)
        for _ in range(5):  # as Envoy's host_selection_retry_max_attempts: re-pick a few times
            h = picker.pick(inflight)
            if h in candidates:
                return h
        return min(candidates, key=inflight.__getitem__)

    def call(e: _Edge):
        """The caller's side of a call; with a route timeout the attempts run under its deadline."""
        if e.route_timeout_s is None:
            return (yield from attempts(e, None))
        cancelled = [False]
        p = process(attempts(e, cancelled))  # a real process: per-try deadlines inside must see it active
        timeout(e.route_timeout_s).callbacks.append(_Deadline(p, env.active_process))
        try:
            return (yield p)
        except simpy.Interrupt:
            cancelled[0] = True  # Envoy resets the pending attempt: no further retry
            e.n_route_timeouts += 1
            e.n_failed += 1
            return False

    def attempts(e: _Edge, cancelled):
        """One call's attempts; with the pool's ``max_retries`` the call's outstanding retry is
        given back when the call ends, whatever its outcome."""
        if e.max_retries is None:
            return (yield from _attempts(e, cancelled, None))
        held = [False]
        try:
            return (yield from _attempts(e, cancelled, held))
        finally:
            if held[0]:
                e.retries_out[0] -= 1

    def _attempts(e: _Edge, cancelled, held):
        """Breaker, bulkhead, per-try timeout and retries with backoff."""
        e.n_calls += 1
        if e.plain:  # no policy on this edge: one attempt, inline
            e.n_attempts += 1
            if (yield from remote(e)):
                return True
            e.n_failed += 1
            return False
        breaker, bulkhead, budget, outlier, pool = e.breaker, e.bulkhead, e.budget, e.outlier, e.pool
        if budget is not None:
            budget.deposit(env.now)
        tried: list = []
        proxy = None
        if e.proxies is not None:
            proxy = e.proxies[int(uniform.next() * len(e.proxies))]
        for attempt in range(e.attempts):
            if cancelled is not None and cancelled[0]:
                return False
            if attempt:
                if budget is not None and not budget.withdraw(env.now):
                    e.n_budget_exhausted += 1
                    break
                if e.max_retries is not None:
                    if e.retries_out[0] >= e.max_retries:
                        e.n_retry_overflow += 1  # Envoy's upstream_rq_retry_overflow
                        break
                    if not held[0]:
                        e.retries_out[0] += 1
                        held[0] = True
                e.n_retries += 1
                retry_times.append((env.now, e.label))
                yield timeout(e.retry.backoff_s(attempt, uniform.next()))
                if cancelled is not None and cancelled[0]:
                    return False
            if breaker is not None and not breaker.allow(env.now):
                e.n_short_circuited += 1
                break  # fail fast: an open breaker is not retried
            if bulkhead is not None and not bulkhead.try_acquire():
                e.n_bulkhead_rejected += 1
                break
            e.n_attempts += 1
            timed_out = False
            host = None
            if e.pick_host:
                host = choose_host(e, tried, proxy)
                if host == -1:  # every host ejected and no panic: "no healthy upstream", a 503
                    e.n_no_healthy += 1
                    if bulkhead is not None:
                        bulkhead.release()
                    if breaker is not None:
                        breaker.record(False, env.now)
                    if e.retry:
                        continue
                    break
                tried.append(host)
            pool_req = None
            if pool is not None:
                if e.pool_spec.overflows(pool.count, len(pool.queue)):
                    e.n_pool_overflow += 1  # Envoy answers 503 at once (upstream overflow)
                    if bulkhead is not None:
                        bulkhead.release()
                    if breaker is not None:
                        breaker.record(False, env.now)
                    if outlier is not None and host is not None:
                        outlier.record(host, False, env.now)
                    if e.retry:
                        continue
                    break
                pool_req = pool.request()
                yield pool_req
            if proxy is not None:
                proxy[1][host] += 1
            if e.timeout_s is None:
                ok = yield from remote(e, host)
            else:
                # Wait for the callee's process; a timer interrupts the wait if it is late.
                # (Cheaper than ``p | timeout``: no Condition event per call.) The callee
                # keeps working after a timeout, as a real server does.
                p = start(env, remote(e, host))
                timeout(e.timeout_s).callbacks.append(_Deadline(p, env.active_process))
                try:
                    ok = yield p
                except simpy.Interrupt:
                    ok = False
                    timed_out = True
                    e.n_timeouts += 1
            if proxy is not None:
                proxy[1][host] -= 1
            if pool_req is not None:
                pool.release(pool_req)
            if bulkhead is not None:
                bulkhead.release()
            if breaker is not None:
                breaker.record(ok, env.now)
            if outlier is not None and host is not None:
                outlier.record(host, ok, env.now)
            if cancelled is not None and cancelled[0]:
                return False  # the route timeout answered the caller already
            if ok:
                return True
            if not e.retry or (timed_out and not e.retry.retry_on_timeout):
                break
        e.n_failed += 1
        return False

    if isinstance(rate, tuple):
        arrival_times = _step_arrivals(rate, n_req, rngs[0])
        interarrival = np.diff(arrival_times, prepend=0.0)
    else:
        interarrival = rngs[0].exponential(1.0 / rate, n_req)
        arrival_times = np.cumsum(interarrival)
    latency = np.zeros(n_req)
    ok_arr = np.zeros(n_req, dtype=bool)
    entry = nodes[cg.entry]

    def request(env, i):
        t0 = env.now
        ok = yield from visit(entry)
        latency[i] = env.now - t0
        ok_arr[i] = ok

    def source(env):
        """Open-loop Poisson arrivals."""
        for i, gap in enumerate(interarrival.tolist()):
            yield timeout(gap)
            process(request(env, i))

    process(source(env))
    env.run()
    end_s = env.now

    warm = int(cg.warmup_fraction * n_req)
    lat_ms = latency[warm:] * 1000.0
    oks = ok_arr[warm:]
    b = cg.batches
    window = float(arrival_times[-1] - arrival_times[warm]) if warm else float(arrival_times[-1])
    node_rows = [
        {"service": nd.name, "visits": nd.visits, "errors": nd.errors, "rate_limited": nd.rejected,
         "replicas": len(nd.resources), "capacity": nd.capacity,
         "utilisation": nd.busy_s / (nd.capacity * end_s) if end_s > 0 else 0.0}
        for nd in nodes.values()
    ]
    edge_rows = [
        {"edge": f"{e.src.name}->{e.dst.name}",
         "mode": "mirror" if e.mirror_percent is not None else "async" if e.is_async else "sync",
         "calls": e.n_calls, "attempts": e.n_attempts, "retries": e.n_retries,
         "timeouts": e.n_timeouts, "failed": e.n_failed, "short_circuited": e.n_short_circuited,
         "bulkhead_rejected": e.n_bulkhead_rejected, "budget_exhausted": e.n_budget_exhausted,
         "breaker_state": e.breaker.state if e.breaker else None, "pool_overflow": e.n_pool_overflow,
         "ejections": len(e.outlier.ejections) if e.outlier else 0, "no_healthy_upstream": e.n_no_healthy,
         "route_timeouts": e.n_route_timeouts, "retry_overflow": e.n_retry_overflow, "mirrored": e.n_mirrored}
        for e in edges
    ]
    transitions = [
        (t, e.breaker.name, frm, to) for e in edges if e.breaker for (t, frm, to) in e.breaker.transitions
    ]
    transitions.sort()
    ejections = sorted((t, f"{e.src.name}->{e.dst.name}", host, dur)
                       for e in edges if e.outlier for (t, host, dur) in e.outlier.ejections)
    return CallGraphResult(
        scenario=cg,
        seed=seed,
        rate_per_s=rate,
        requests=n_req,
        success_rate=batch_means(oks.astype(float), b),
        mean_latency_ms=batch_means(lat_ms, b),
        p50_latency_ms=percentile_estimate(lat_ms, 0.50, b),
        p95_latency_ms=percentile_estimate(lat_ms, 0.95, b),
        p99_latency_ms=percentile_estimate(lat_ms, 0.99, b),
        throughput_per_s=float(oks.sum() / window) if window > 0 else float("nan"),
        nodes=pd.DataFrame(node_rows).set_index("service"),
        edges=pd.DataFrame(edge_rows, columns=_EDGE_COLUMNS).set_index("edge"),
        latency_ms=lat_ms,
        ok=oks,
        breaker_transitions=transitions,
        ejections=ejections,
        retry_times_s=retry_times,
        arrival_s=arrival_times[warm:],
        cpu_utilisation=machine.utilisation(end_s) if machine is not None else None,
    )
