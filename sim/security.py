"""Day 3 security models: lateral movement over the service graph, signing-key rotation against the
verifier's JWKS refetch rule, token revocation exposure, an mTLS PERMISSIVE→STRICT migration, and
TLS handshake cost with connection reuse. Each is checked against a closed form in the tests.

Times in seconds unless a name says otherwise (``*_per_h`` rates per hour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd
import simpy

from ._validate import check_fraction, check_int, check_nonnegative, check_positive

# -- lateral movement -------------------------------------------------------------------------

#: CloudMart's synchronous call graph (caller → callee) and which service owns which data store.
CLOUDMART_CALLS: tuple[tuple[str, str], ...] = (
    ("gateway", "auth"), ("gateway", "user"), ("gateway", "product"), ("gateway", "inventory"),
    ("gateway", "order"), ("gateway", "payment"), ("gateway", "notification"),
    ("auth", "user"), ("order", "product"),
)
CLOUDMART_STORES: dict[str, str] = {"postgres": "order", "redis": "auth", "nats": "order"}

REGIMES = ("flat", "mtls", "mtls+authz", "mtls+authz+netpol")


def reachable_edges(regime: str, services: Iterable[str], calls: Iterable[tuple[str, str]],
                    stores: dict[str, str] | None = None) -> set[tuple[str, str]]:
    """Which (from, to) pairs a compromised workload can use under a regime.

    * ``flat``: any workload reaches any other and every data store.
    * ``mtls``: the same pairs. mTLS authenticates, it does not authorize: a compromised workload
      holds a valid mesh certificate, so every service still accepts it (the data stores, outside
      the mesh, too).
    * ``mtls+authz``: AuthorizationPolicies allow only the call graph's edges between services; the
      data stores, not behind a sidecar, are still reachable from every workload.
    * ``mtls+authz+netpol``: NetworkPolicies also limit each store to the service that owns it.
    """
    if regime not in REGIMES:
        raise ValueError(f"regime: got {regime!r}; valid: {', '.join(REGIMES)}")
    services = list(dict.fromkeys(services))
    stores = dict(stores or {})
    calls = {(a, b) for a, b in calls}
    unknown = {n for e in calls for n in e} - set(services)
    if unknown:
        raise ValueError(f"calls: {sorted(unknown)} are not in services {services}")
    for store, owner in stores.items():
        if owner not in services:
            raise ValueError(f"stores: owner {owner!r} of {store!r} is not a service")
    everyone = set(services) | set(stores)
    if regime in ("flat", "mtls"):
        return {(a, b) for a in everyone for b in everyone if a != b and a not in stores}
    edges = set(calls) | {(s, store) for s in services for store in stores}
    if regime == "mtls+authz+netpol":
        edges = set(calls) | {(owner, store) for store, owner in stores.items()}
    return edges


@dataclass(frozen=True)
class LateralMovement:
    """An attacker who holds ``entry`` and tries every usable edge from every node it holds; each
    attempt succeeds after an exponential time with rate ``p_exploit_per_h``; the whole intrusion is
    detected (and stopped) after an exponential time with rate ``detect_per_h``.

    The time to reach ``target`` is then the first-passage time over the usable edges with
    Exp(``p_exploit_per_h``) edge weights: on a chain of k hops it is Erlang(k), and the chance of
    reaching the target before detection is (λ/(λ+μ))^k."""

    edges: frozenset
    entry: str
    target: str
    p_exploit_per_h: float = 0.5
    detect_per_h: float = 0.1
    horizon_h: float = 168.0

    def __post_init__(self):
        check_positive("p_exploit_per_h", self.p_exploit_per_h)
        check_nonnegative("detect_per_h", self.detect_per_h)
        check_positive("horizon_h", self.horizon_h)
        nodes = {n for e in self.edges for n in e}
        for name in ("entry", "target"):
            if getattr(self, name) not in nodes | {self.entry}:
                raise ValueError(f"{name}: got {getattr(self, name)!r}; valid: a node of the edges {sorted(nodes)}")

    @classmethod
    def cloudmart(cls, regime: str, entry: str = "notification", target: str = "postgres", **kw) -> "LateralMovement":
        services = ["gateway", "auth", "user", "product", "inventory", "order", "payment", "notification"]
        edges = reachable_edges(regime, services, CLOUDMART_CALLS, CLOUDMART_STORES)
        return cls(frozenset(edges), entry, target, **kw)

    def hops(self) -> int | None:
        """Fewest edges from entry to target (None if unreachable)."""
        frontier, seen, depth = {self.entry}, {self.entry}, 0
        while frontier:
            if self.target in frontier:
                return depth
            frontier = {b for a, b in self.edges if a in frontier and b not in seen}
            seen |= frontier
            depth += 1
        return None

    def run(self, seed: int = 0, replications: int = 500) -> "LateralResult":
        check_int("replications", replications)
        rng = np.random.default_rng(seed)
        out = np.full(replications, np.inf)
        compromised = []
        for r in range(replications):
            t_target, times = self._one(rng)
            out[r] = t_target
            compromised.append(times)
        return LateralResult(self, out, compromised)

    def _one(self, rng) -> tuple[float, dict[str, float]]:
        env = simpy.Environment()
        times: dict[str, float] = {self.entry: 0.0}
        stop = env.event()
        out = {"target": math.inf}
        neighbours: dict[str, list[str]] = {}
        for a, b in self.edges:
            neighbours.setdefault(a, []).append(b)
        for v in neighbours.values():
            v.sort()

        def attempt(src: str, dst: str):
            yield env.timeout(rng.exponential(1.0 / self.p_exploit_per_h))
            if dst not in times and not stop.triggered:
                times[dst] = env.now
                if dst == self.target:
                    out["target"] = env.now
                    stop.succeed()
                    return
                for nxt in neighbours.get(dst, []):
                    if nxt not in times:
                        env.process(attempt(dst, nxt))

        def detection():
            if self.detect_per_h > 0:
                yield env.timeout(rng.exponential(1.0 / self.detect_per_h))
                if not stop.triggered:
                    stop.succeed()

        for nxt in neighbours.get(self.entry, []):
            env.process(attempt(self.entry, nxt))
        env.process(detection())
        env.run(until=simpy.AnyOf(env, [stop, env.timeout(self.horizon_h)]))
        return out["target"], times


@dataclass
class LateralResult:
    scenario: LateralMovement
    time_to_target_h: np.ndarray
    compromised: list

    @property
    def p_reach(self) -> float:
        return float(np.isfinite(self.time_to_target_h).mean())

    def mean_time_to_target_h(self) -> float:
        reached = self.time_to_target_h[np.isfinite(self.time_to_target_h)]
        return float(reached.mean()) if reached.size else math.inf

    def compromised_curve(self, times_h: Iterable[float]) -> pd.DataFrame:
        """Mean number of nodes held at each time (stopped intrusions keep what they held)."""
        rows = [{"t_h": t, "compromised": float(np.mean([sum(1 for v in c.values() if v <= t) for c in self.compromised]))}
                for t in times_h]
        return pd.DataFrame(rows)


def chain_reach_probability(hops: int, p_exploit_per_h: float, detect_per_h: float) -> float:
    """P(reach the target before detection) on a chain of ``hops`` edges: (λ/(λ+μ))^k."""
    return (p_exploit_per_h / (p_exploit_per_h + detect_per_h)) ** hops


def complete_graph_mean_time_h(n: int, p_exploit_per_h: float) -> float:
    """Mean first-passage time between two given nodes of the complete graph K_n with Exp(λ) edge
    weights (Janson 1999): H_{n−1} / ((n−1)·λ). While k nodes are held, k(n−k) edges are being
    tried, so the next node falls after Exp(k(n−k)λ); the target is equally likely to be any of the
    n−1 others in that order, so E[T] = Σ_k (n−k)/(n−1) · 1/(k(n−k)λ)."""
    check_int("n", n, minimum=2)
    return sum(1.0 / k for k in range(1, n)) / ((n - 1) * check_positive("p_exploit_per_h", p_exploit_per_h))


# -- signing-key rotation -----------------------------------------------------------------------

@dataclass(frozen=True)
class KeyRotation:
    """Clients hold tokens and send requests (Poisson, ``rate_per_s`` in all) to ``replicas``
    verifier replicas chosen at random; at ``rotate_at_s`` the issuer rotates its signing key.

    Each verifier caches the keys of its last JWKS fetch and, on a token whose ``kid`` it does not
    know, refetches only if its last fetch is at least ``jwks_refresh_s`` old (else 401): the rule of
    ``services.common.auth.KeySource``. A refetch replaces the cache with the published set.
    ``last_fetch_age_s`` is how long before the rotation each replica last fetched.

    * ``overlap=True``: the next key, published since before the verifiers' last fetch, starts
      signing; the old key stays published. Nothing is refused.
    * ``overlap=False``: a never-published key signs at once and the old key is withdrawn. With
      ``edge_check`` (the gateway asks auth, which knows its own ring at once) every request with an
      old token is refused; the client then logs in again (one token issued) and retries with a
      token from the new key, which a verifier accepts once it may refetch.
    """

    rate_per_s: float = 50.0
    clients: int = 20
    replicas: int = 2
    jwks_refresh_s: float = 5.0
    overlap: bool = True
    rotate_at_s: float = 10.0
    duration_s: float = 30.0
    last_fetch_age_s: float = 60.0
    edge_check: bool = True
    bin_s: float = 1.0

    def __post_init__(self):
        check_positive("rate_per_s", self.rate_per_s)
        check_int("clients", self.clients)
        check_int("replicas", self.replicas)
        check_nonnegative("jwks_refresh_s", self.jwks_refresh_s)
        check_nonnegative("rotate_at_s", self.rotate_at_s)
        check_positive("duration_s", self.duration_s)
        check_nonnegative("last_fetch_age_s", self.last_fetch_age_s)
        check_positive("bin_s", self.bin_s)
        if self.rotate_at_s >= self.duration_s:
            raise ValueError(f"rotate_at_s: got {self.rotate_at_s!r}; valid: < duration_s ({self.duration_s})")


@dataclass
class KeyRotationResult:
    scenario: KeyRotation
    requests: pd.DataFrame          # t_s, client, replica, rejected, reason
    relogins: int

    @property
    def rejected(self) -> int:
        return int(self.requests["rejected"].sum())

    def rejected_share_over_time(self) -> pd.DataFrame:
        bins = (self.requests["t_s"] // self.scenario.bin_s) * self.scenario.bin_s
        g = self.requests.groupby(bins)["rejected"]
        return pd.DataFrame({"t_s": g.mean().index, "requests": g.size().values,
                             "rejected_share": g.mean().values}).reset_index(drop=True)


def simulate_key_rotation(scenario: KeyRotation, seed: int = 0) -> KeyRotationResult:
    """Replay one rotation (see :class:`KeyRotation`)."""
    s = scenario
    rng = np.random.default_rng(seed)
    old, nxt, emergency = "k-old", "k-next", "k-new"
    published = {old, nxt}
    signing = old
    caches = [set(published) for _ in range(s.replicas)]
    last_fetch = [s.rotate_at_s - s.last_fetch_age_s] * s.replicas
    tokens = [old] * s.clients
    rotated = False
    rows = []
    relogins = 0
    t = 0.0
    while True:
        t += rng.exponential(1.0 / s.rate_per_s)
        if t >= s.duration_s:
            break
        if not rotated and t >= s.rotate_at_s:
            rotated = True
            if s.overlap:
                signing, published = nxt, {old, nxt, "k-after"}
            else:
                signing, published = emergency, {nxt, emergency}
        client = int(rng.integers(s.clients))
        replica = int(rng.integers(s.replicas))
        kid = tokens[client]
        reason = ""
        if s.edge_check and kid not in published:
            reason = "edge: key withdrawn"
        elif kid not in caches[replica]:
            if t - last_fetch[replica] >= s.jwks_refresh_s:
                last_fetch[replica] = t
                caches[replica] = set(published)
                if kid not in published:
                    reason = "verifier: key withdrawn"
            else:
                reason = "verifier: unknown kid, refetch not yet allowed"
        rows.append((t, client, replica, bool(reason), reason))
        if reason and tokens[client] != signing:
            tokens[client] = signing          # the client logs in again after a 401
            relogins += 1
    frame = pd.DataFrame(rows, columns=["t_s", "client", "replica", "rejected", "reason"])
    return KeyRotationResult(s, frame, relogins)


# -- revocation exposure ------------------------------------------------------------------------

def revocation_exposure_s(ttl_s: float, detect_s: float | None = None) -> float:
    """Mean time a stolen token stays usable, the theft being uniform over the token's life.

    Without a deny list (``detect_s=None``) it is the remaining lifetime: TTL/2. With a deny list
    consulted after the theft is detected ``detect_s`` later: E[min(U, d)] = d − d²/(2·TTL) for
    d ≤ TTL (and TTL/2 beyond)."""
    ttl = check_positive("ttl_s", ttl_s)
    if detect_s is None:
        return ttl / 2
    d = check_nonnegative("detect_s", detect_s)
    if d >= ttl:
        return ttl / 2
    return d - d * d / (2 * ttl)


def simulate_revocation_exposure(ttl_s: float, detect_s: float | None = None, thefts: int = 10_000,
                                 seed: int = 0) -> np.ndarray:
    """Monte-Carlo exposures (seconds) of ``thefts`` stolen tokens (see :func:`revocation_exposure_s`)."""
    ttl = check_positive("ttl_s", ttl_s)
    check_int("thefts", thefts)
    rng = np.random.default_rng(seed)
    remaining = ttl - rng.uniform(0, ttl, thefts)
    if detect_s is None:
        return remaining
    return np.minimum(remaining, check_nonnegative("detect_s", detect_s))


def token_issue_rate_per_s(clients: int, ttl_s: float, refresh_fraction: float = 1.0) -> float:
    """Tokens the issuer signs per second when ``clients`` renew each token after
    ``refresh_fraction`` of its lifetime: clients / (TTL · fraction)."""
    check_int("clients", clients)
    fraction = check_fraction("refresh_fraction", refresh_fraction)
    if fraction == 0:
        raise ValueError("refresh_fraction: got 0; valid: a number in (0, 1]")
    return clients / (check_positive("ttl_s", ttl_s) * fraction)


# -- mTLS migration -----------------------------------------------------------------------------

MODES = ("PERMISSIVE", "STRICT", "DISABLE")


@dataclass
class MigrationState:
    modes: dict[str, str]
    legacy: set[str] = field(default_factory=set)       # clients that speak plaintext


def mtls_migration(plan: list[tuple], traffic: dict[tuple[str, str], float], legacy: Iterable[str],
                   services: Iterable[str], step_s: float = 60.0, start_mode: str = "PERMISSIVE",
                   seed: int | None = None) -> pd.DataFrame:
    """Failed requests per migration step.

    ``traffic`` maps (client, service) to requests per second; ``legacy`` clients send plaintext
    until a ``("migrate", client)`` step gives them a sidecar. ``("mode", service | "*", MODE)``
    sets a PeerAuthentication. A server in STRICT refuses plaintext; PERMISSIVE and DISABLE accept
    it (DISABLE also drops the mesh identity: the exercise forbids it, it fails nothing here). A
    mesh client to a DISABLE server is not counted as failing: with Istio's auto mTLS that depends
    on configuration the model does not carry.

    Each step lasts ``step_s``; its failures are the expected count (``seed=None``) or a Poisson
    draw. Returns one row per step: the step, modes after it, failing edges, failed requests."""
    services = list(services)
    if start_mode not in MODES:
        raise ValueError(f"start_mode: got {start_mode!r}; valid: {', '.join(MODES)}")
    check_positive("step_s", step_s)
    state = MigrationState({s: start_mode for s in services}, set(legacy))
    for (client, server), rate in traffic.items():
        if server not in state.modes:
            raise ValueError(f"traffic: service {server!r} is not one of {services}")
        check_nonnegative(f"traffic[{client!r}, {server!r}]", rate)
    rng = np.random.default_rng(seed) if seed is not None else None
    rows = []
    for i, step in enumerate(plan):
        if not isinstance(step, tuple) or not step:
            raise ValueError(f"plan[{i}]: got {step!r}; valid: ('mode', service|'*', MODE) or ('migrate', client)")
        if step[0] == "mode" and len(step) == 3:
            _, target, mode = step
            if mode not in MODES:
                raise ValueError(f"plan[{i}]: mode {mode!r}; valid: {', '.join(MODES)}")
            targets = services if target == "*" else [target]
            for t in targets:
                if t not in state.modes:
                    raise ValueError(f"plan[{i}]: service {t!r} is not one of {services}")
                state.modes[t] = mode
        elif step[0] == "migrate" and len(step) == 2:
            if step[1] not in state.legacy:
                raise ValueError(f"plan[{i}]: {step[1]!r} is not a legacy client (legacy: {sorted(state.legacy)})")
            state.legacy.discard(step[1])
        else:
            raise ValueError(f"plan[{i}]: got {step!r}; valid: ('mode', service|'*', MODE) or ('migrate', client)")
        failing = [(c, s) for (c, s), r in traffic.items() if c in state.legacy and state.modes[s] == "STRICT" and r > 0]
        expected = sum(traffic[e] * step_s for e in failing)
        failed = float(rng.poisson(expected)) if rng is not None else expected
        rows.append({"step": i, "action": step, "modes": dict(state.modes), "failing_edges": failing,
                     "failed_requests": failed})
    return pd.DataFrame(rows)


# -- handshake cost -----------------------------------------------------------------------------

@dataclass(frozen=True)
class HandshakeScenario:
    """Requests (Poisson, ``rate_per_s``) over one client→server edge. With ``keepalive`` a request
    reuses an idle pooled connection when there is one (an idle connection closes after
    ``idle_timeout_s``); else it opens a new one, paying ``handshake_ms`` (TCP + TLS 1.3 with
    client certificates)."""

    rate_per_s: float = 20.0
    service_ms: float = 5.0
    handshake_ms: float = 3.0
    keepalive: bool = True
    idle_timeout_s: float = 0.1
    duration_s: float = 60.0

    def __post_init__(self):
        check_positive("rate_per_s", self.rate_per_s)
        check_nonnegative("service_ms", self.service_ms)
        check_nonnegative("handshake_ms", self.handshake_ms)
        check_nonnegative("idle_timeout_s", self.idle_timeout_s)
        check_positive("duration_s", self.duration_s)


def simulate_handshakes(s: HandshakeScenario, seed: int = 0) -> dict:
    """Share of requests that needed a handshake and the mean latency added by handshakes (ms)."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    idle: list[float] = []            # times at which each idle connection became idle
    counts = {"requests": 0, "handshakes": 0}

    def request():
        counts["requests"] += 1
        now = env.now
        while idle and now - idle[-1] > s.idle_timeout_s:
            idle.pop()                 # the most recent is the freshest: older ones timed out too
        reuse = s.keepalive and bool(idle)
        if reuse:
            idle.pop()
        else:
            counts["handshakes"] += 1
            yield env.timeout(s.handshake_ms / 1000.0)
        yield env.timeout(s.service_ms / 1000.0)
        if s.keepalive:
            idle.append(env.now)
            idle.sort(reverse=False)

    def arrivals():
        while True:
            yield env.timeout(rng.exponential(1.0 / s.rate_per_s))
            env.process(request())

    env.process(arrivals())
    env.run(until=s.duration_s)
    share = counts["handshakes"] / counts["requests"] if counts["requests"] else math.nan
    return {"requests": counts["requests"], "handshake_share": share,
            "added_ms_per_request": share * s.handshake_ms}


def handshake_share_theory(rate_per_s: float, idle_timeout_s: float, keepalive: bool = True) -> float:
    """With negligible service and handshake time one connection suffices; a request needs a new one when the gap
    since the previous request exceeds the idle timeout: P = e^{−λτ} (1 without keep-alive)."""
    if not keepalive:
        return 1.0
    return math.exp(-check_positive("rate_per_s", rate_per_s) * check_nonnegative("idle_timeout_s", idle_timeout_s))
