"""Stations and open queueing networks in SimPy.

A :class:`Station` is c identical servers with a general service-time distribution, modelled as a
``simpy.Resource``. A scenario is a small frozen value — :class:`QueueScenario` for one station
with Poisson arrivals, :class:`NetworkScenario` for an open network with probabilistic routing
(a Jackson network when every service time is exponential) — and ``sim.run(scenario, seed=…)``
returns a :class:`sim.results.QueueResult`.

Time inside the model is in seconds. Customers are served first come, first served.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import networkx as nx
import numpy as np
import simpy

from . import theory
from ._validate import check_fraction, check_int, check_nonnegative, check_positive
from .distributions import Distribution, Exponential, Stream, UniformStream, as_distribution
from .results import QueueResult, StationResult, batch_means, percentile_estimate
from .servers import Server

__all__ = ["Station", "QueueScenario", "NetworkScenario", "run_queueing"]


@dataclass(frozen=True)
class Station:
    """``servers`` identical servers in front of one FIFO queue; ``service`` in seconds."""

    name: str
    service: Distribution
    servers: int = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: got {self.name!r}; valid: a non-empty string")
        object.__setattr__(self, "service", as_distribution(self.service, f"service[{self.name!r}]"))
        check_int(f"servers[{self.name!r}]", self.servers)

    @property
    def service_rate_per_s(self) -> float:
        """1 / mean service time, per server."""
        return 1.0 / self.service.mean_s


def _freeze(mapping) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class NetworkScenario:
    """An open network: Poisson arrivals from outside, stations, routing probabilities.

    ``external_rate_per_s`` maps a station to its external Poisson arrival rate;
    ``routing[a][b]`` is the probability that a customer leaving ``a`` goes to ``b`` (the rest
    leaves the network). ``customers`` external arrivals are simulated; the first
    ``warmup_fraction`` of the run is discarded; intervals use ``batches`` batch means.
    """

    stations: tuple
    external_rate_per_s: Mapping[str, float]
    routing: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    customers: int = 50_000
    warmup_fraction: float = 0.1
    batches: int = 20

    def __post_init__(self):
        stations = tuple(self.stations)
        if not stations or not all(isinstance(s, Station) for s in stations):
            raise ValueError(f"stations: got {self.stations!r}; valid: a non-empty sequence of sim.Station")
        names = [s.name for s in stations]
        if len(set(names)) != len(names):
            raise ValueError(f"stations: got duplicate names {names}; valid: unique station names")
        object.__setattr__(self, "stations", stations)
        ext = dict(self.external_rate_per_s or {})
        for n, r in ext.items():
            if n not in names:
                raise ValueError(f"external_rate_per_s: got station {n!r}; valid: one of {names}")
            check_nonnegative(f"external_rate_per_s[{n!r}]", r)
        if sum(ext.values()) <= 0:
            raise ValueError(f"external_rate_per_s: got {ext!r}; valid: a total rate > 0")
        object.__setattr__(self, "external_rate_per_s", _freeze(ext))
        routing = {k: _freeze(v) for k, v in dict(self.routing or {}).items()}
        theory._routing_matrix(names, routing)  # validates names and probabilities
        object.__setattr__(self, "routing", _freeze(routing))
        check_int("customers", self.customers, 10)
        check_fraction("warmup_fraction", self.warmup_fraction, closed_high=False)
        check_int("batches", self.batches, 2)
        self.arrival_rates()  # rejects routing loops without an exit

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stations]

    def arrival_rates(self) -> dict[str, float]:
        """Total arrival rate at every station, from the traffic equations."""
        return theory.jackson_arrival_rates(self.external_rate_per_s, self.routing, self.names)

    def utilisations(self) -> dict[str, float]:
        """Offered utilisation λ E[S] / c of every station."""
        lam = self.arrival_rates()
        return {s.name: lam[s.name] * s.service.mean_s / s.servers for s in self.stations}

    def theory(self) -> dict:
        """Jackson product-form results (needs exponential service everywhere)."""
        for s in self.stations:
            if not isinstance(s.service, Exponential):
                raise ValueError(
                    f"service[{s.name!r}]: got {s.service.name}; valid: exponential (Jackson networks)"
                )
        return theory.jackson_network(
            {s.name: (s.servers, s.service_rate_per_s) for s in self.stations},
            self.external_rate_per_s,
            self.routing,
        )

    @classmethod
    def from_graph(cls, graph: nx.DiGraph, **kwargs: Any) -> "NetworkScenario":
        """Build from a DiGraph: nodes carry ``service`` and ``servers`` (and optionally
        ``external_rate_per_s``); edges carry the routing probability ``p``."""
        if not isinstance(graph, nx.DiGraph):
            raise ValueError(f"graph: got {type(graph).__name__}; valid: a networkx.DiGraph")
        stations, ext, routing = [], {}, {}
        for n, data in graph.nodes(data=True):
            if "service" not in data:
                raise ValueError(f"graph node {n!r}: got attributes {sorted(data)}; valid: needs 'service'")
            stations.append(Station(str(n), data["service"], data.get("servers", 1)))
            if data.get("external_rate_per_s"):
                ext[str(n)] = data["external_rate_per_s"]
        for a, b, data in graph.edges(data=True):
            if "p" not in data:
                raise ValueError(f"graph edge {a!r}->{b!r}: got attributes {sorted(data)}; valid: needs 'p'")
            routing.setdefault(str(a), {})[str(b)] = data["p"]
        return cls(tuple(stations), ext, routing, **kwargs)

    def _run(self, seed: int = 0) -> QueueResult:
        return run_queueing(self, seed)


@dataclass(frozen=True)
class QueueScenario:
    """One station with Poisson arrivals: M/M/c, M/G/c, M/D/1, … in one value.

    ``service`` is a :class:`sim.Distribution` (or a mean in seconds, taken as exponential).
    """

    arrival_rate_per_s: float
    service: Distribution = Exponential(1.0)
    servers: int = 1
    customers: int = 50_000
    warmup_fraction: float = 0.1
    batches: int = 20

    def __post_init__(self):
        check_positive("arrival_rate_per_s", self.arrival_rate_per_s)
        object.__setattr__(self, "service", as_distribution(self.service, "service"))
        check_int("servers", self.servers)
        check_int("customers", self.customers, 10)
        check_fraction("warmup_fraction", self.warmup_fraction, closed_high=False)
        check_int("batches", self.batches, 2)

    @property
    def utilisation(self) -> float:
        """Offered utilisation ρ = λ E[S] / c."""
        return self.arrival_rate_per_s * self.service.mean_s / self.servers

    def network(self) -> NetworkScenario:
        """The same scenario as a one-station network."""
        return NetworkScenario(
            (Station("station", self.service, self.servers),),
            {"station": self.arrival_rate_per_s},
            {},
            self.customers,
            self.warmup_fraction,
            self.batches,
        )

    def _run(self, seed: int = 0) -> QueueResult:
        return run_queueing(self, seed)


def run_queueing(scenario, seed: int = 0) -> QueueResult:
    """Simulate a :class:`QueueScenario` or :class:`NetworkScenario` with SimPy; see :func:`sim.run`."""
    if isinstance(scenario, QueueScenario):
        return _simulate(scenario.network(), int(seed), scenario)
    if isinstance(scenario, NetworkScenario):
        return _simulate(scenario, int(seed), scenario)
    raise ValueError(f"scenario: got {type(scenario).__name__}; valid: QueueScenario or NetworkScenario")


def _simulate(net: NetworkScenario, seed: int, label: Any) -> QueueResult:
    stations = net.stations
    k = len(stations)
    index = {s.name: i for i, s in enumerate(stations)}
    n = net.customers
    seq = np.random.SeedSequence(seed)
    rngs = [np.random.default_rng(s) for s in seq.spawn(3 + k)]

    gamma = sum(net.external_rate_per_s.values())
    interarrival = rngs[0].exponential(1.0 / gamma, n)
    arrival_times = np.cumsum(interarrival)
    entry_names = [nm for nm, r in net.external_rate_per_s.items() if r > 0]
    if len(entry_names) == 1:
        entries = [index[entry_names[0]]] * n
    else:
        probs = np.array([net.external_rate_per_s[nm] for nm in entry_names]) / gamma
        picks = rngs[1].choice(len(entry_names), size=n, p=probs)
        entries = [index[entry_names[j]] for j in picks.tolist()]
    service = [Stream(s.service, rngs[3 + i]) for i, s in enumerate(stations)]
    # Routing: cumulative probabilities per station; None means "always leave".
    route_cum: list = [None] * k
    route_dst: list = [None] * k
    for src, row in net.routing.items():
        items = [(index[d], p) for d, p in row.items() if p > 0]
        if items:
            route_dst[index[src]] = [d for d, _ in items]
            route_cum[index[src]] = np.cumsum([p for _, p in items]).tolist()
    uniform = UniformStream(rngs[2])

    env = simpy.Environment()
    resources = [Server(env, s.servers) for s in stations]
    arr = [[] for _ in range(k)]
    beg = [[] for _ in range(k)]
    end = [[] for _ in range(k)]
    exit_time = [0.0] * n
    timeout = env.timeout

    def customer(env, cid, s):
        """One customer's path: queue, serve, route — until it leaves the network."""
        while True:
            a = env.now
            with resources[s].request() as req:
                yield req
                b = env.now
                yield timeout(service[s].next())
            arr[s].append(a)
            beg[s].append(b)
            end[s].append(env.now)
            cum = route_cum[s]
            if cum is None:
                break
            j = bisect.bisect_right(cum, uniform.next())
            if j == len(cum):
                break
            s = route_dst[s][j]
        exit_time[cid] = env.now

    def source(env):
        """Poisson arrivals from outside the network."""
        process = env.process
        for cid, gap in enumerate(interarrival.tolist()):
            yield timeout(gap)
            process(customer(env, cid, entries[cid]))

    env.process(source(env))
    env.run()

    warm_index = int(net.warmup_fraction * n)
    t0 = float(arrival_times[warm_index]) if warm_index > 0 else 0.0
    t1 = float(arrival_times[-1])
    window = t1 - t0
    b = net.batches
    results = {}
    for i, st in enumerate(stations):
        a_ = np.asarray(arr[i])
        s_ = np.asarray(beg[i])
        e_ = np.asarray(end[i])
        order = np.argsort(a_, kind="stable")
        a_, s_, e_ = a_[order], s_[order], e_[order]
        inside = (a_ >= t0) & (a_ <= t1)
        wait = (s_ - a_)[inside]
        soj = (e_ - a_)[inside]
        area = np.clip(np.minimum(e_, t1) - np.maximum(a_, t0), 0, None).sum()
        busy = np.clip(np.minimum(e_, t1) - np.maximum(s_, t0), 0, None).sum()
        results[st.name] = StationResult(
            name=st.name,
            servers=st.servers,
            visits=int(inside.sum()),
            arrival_rate_per_s=float(inside.sum() / window),
            utilisation=float(busy / (st.servers * window)),
            mean_number=float(area / window),
            wait_probability=batch_means((wait > 0).astype(float), b),
            mean_wait_s=batch_means(wait, b),
            mean_sojourn_s=batch_means(soj, b),
            p50_sojourn_s=percentile_estimate(soj, 0.50, b),
            p90_sojourn_s=percentile_estimate(soj, 0.90, b),
            p99_sojourn_s=percentile_estimate(soj, 0.99, b),
        )
    response = (np.asarray(exit_time) - arrival_times)[warm_index:]
    departures = np.asarray(exit_time)
    done_in_window = int(((departures >= t0) & (departures <= t1)).sum())
    return QueueResult(
        scenario=label if label is not None else net,
        seed=seed,
        stations=results,
        customers=n,
        mean_response_s=batch_means(response, b),
        p50_response_s=percentile_estimate(response, 0.50, b),
        p99_response_s=percentile_estimate(response, 0.99, b),
        throughput_per_s=done_in_window / window,
        window_s=window,
        response_times_s=response,
    )
