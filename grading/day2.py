"""Day 2 exercises: edge limits, gateway or mesh, a rollout policy, a Kong bundle, mesh resilience.

==========================  ========  ============================================================
exercise id                 notebook  answer shape
==========================  ========  ============================================================
``day2.edge_limits``        01        ``{"auth_at": "edge"|"service", "limits": {class: {"key", "rate_per_s", "burst"}}}``
``day2.gateway_choice``     02        ``{card: {"choice", "because": [req ids], "sidecar_usd_per_month"?}}``
``day2.rollout_policy``     03        ``{"steps_percent", "step_s", "max_error_rate", "failed_checks_to_rollback", "retry", "outlier"}``
``day2.kong_bundle``        04        KongPlugin / KongConsumer / HTTPRoute YAML (a str)
``day2.mesh_resilience``    05        DestinationRule + VirtualService YAML for ``product`` (a str)
==========================  ========  ============================================================

Every check scores two opposing criteria and the points of one are earned only together with the
other; every scenario comes from the learner's variant (:func:`scenario`), and the sims run on
hidden seeds (:func:`grading.hidden_seeds`) besides the shown one.

**``day2.edge_limits``** (10). Three client classes reach the gateway: ``app`` (the mobile app:
``users`` people with their own tokens behind ``nat_addresses`` carrier-NAT addresses, and one
abusive script with a valid free-account token from its own address), ``partner`` (one server
with an API key, bursty: on/off at three times its mean rate) and ``anonymous`` (crawlers, one
address each, no credentials). A limit is a token bucket ``{"key": "ip" | "subject" |
"header:x-api-key", "rate_per_s", "burst"}`` per value of its key; a ``subject`` key exists only
where the token is checked, so with ``auth_at: "service"`` a subject key counts as ``ip``. Graded
on hidden Poisson traces: backend utilisation < 0.8 (4) × the legitimate factor; legitimate
requests (app users and partner) rejected < 1 % (4) × the protection factor; the NAT'd class keyed
by ``subject`` (2) × both. Each factor is 1 at its target and falls linearly to 0 (utilisation
1.0; 10 % rejected).

**``day2.gateway_choice``** (11). Six scenario cards, each listing requirement ids of
:data:`REQUIREMENTS`. The rule table: a card needs Istio if it has a mesh requirement (mesh:
R2, R7, R9), Kong if it has an edge API-management requirement (edge: R1, R5, R8), both if both,
neither if none (context requirements R4, R6, R10, R11 decide nothing). Points: the choice per card
(1 each); ``because`` names a deciding requirement of the card and no requirement the card does not
list (0.5 each; for "neither", a context requirement); ``sidecar_usd_per_month`` within 15 % of
:func:`sim.mesh.sidecar_cost` for the cards that need Istio, counted only where the choice is right
(2 × share). Cards whose right answer is "both" are at most one in six, so "both" everywhere loses.

**``day2.rollout_policy``** (10). Canary ``steps_percent``, ``step_s``, ``max_error_rate``
(the request-success gate), ``failed_checks_to_rollback``; ``retry: {"attempts", "budget"}``;
``outlier: {"consecutive_5xx", "base_ejection_s", "max_ejection_percent"}``. Rollouts run in
:func:`sim.simulate_canary` on hidden seeds: bad releases (error rate drawn from the variant's
defect range) and good ones (the baseline's rate). A bad release is *contained* when it is rolled
back having exposed at most the variant's error budget. Safety = contained ≥ 95 % (3) and mean
exposure ≤ budget (2), times the speed factor; speed = false rollbacks of good releases ≤ 5 % (2)
and mean promotion time ≤ limit (2), times the safety factor. Retries (1): on the variant's
4-replica product with one bad replica the callers' error rate ≤ 1 %, and in a full outage the
retry amplification ≤ 1.3× (:func:`sim.run` of a call graph with the Istio retry and ejection).

**``day2.kong_bundle``** (10). The variant's API product: ``/api/products`` public, limited per
client address; ``/api/orders`` behind ``key-auth`` with per-consumer limits by tier (each
KongConsumer annotated with its tier's rate-limiting plugin, ``limit_by: consumer``);
``/api/auth/token`` open; ``proxy-cache`` on products with the variant's TTL; a
``request-transformer`` adding the variant's header on orders. Rate-limiting configs go through
the local translation (:mod:`cluster.dataplane.kong`) and are evaluated per consumer and address
with :class:`sim.FixedWindow` on hidden traffic at twice each limit (conformance: every window
admits at most the limit and at least 95 % of it). Points: valid Kong resources (1) and plugin
configs (1) × the conformance share; conformance (3 × share); key-auth on orders with the token
route open (2), cache (2), header (1), each × the conformance share. Live later: the same bundle
through ``cm.apply`` and a conformance run with ``cm.load(api_key=…)``.

**``day2.mesh_resilience``** (9). A DestinationRule and a VirtualService for ``product``,
translated by :mod:`cluster.dataplane.istio` (unsupported fields are errors), mapped to a
``sim.CallGraph`` edge order→product (``connectionPool`` → :class:`sim.ConnectionPool`,
``outlierDetection`` → :class:`sim.OutlierDetection`, ``retries`` → :class:`sim.Retry` to another
host with ``perTryTimeout``, ``timeout`` → the route timeout; no ``retries`` → Istio's default),
and run under the variant's load with one slow and one failing replica on the shown and hidden
seeds. Points: p99 ≤ SLO (3) × error factor; error rate ≤ target (3) × p99 factor; retry
amplification ≤ 1.3× (2) × error factor; translated cleanly (1) × the mean of the other factors.
A live smoke point joins when the Envoy sidecars land.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import grading
from grading import AnswerShapeError, Grader, _is_number, exercise, variants
from grading.manifests import yaml_documents

__all__ = ["scenario", "REQUIREMENTS", "EDGE_CLASSES", "EXAMPLE_EDGE_LIMITS", "EXAMPLE_ROLLOUT",
           "EXAMPLE_KONG_BUNDLE", "EXAMPLE_MESH_POLICY", "edge_traces", "rollout_outcomes", "mesh_outcome",
           "kong_conformance"]

EXERCISES = ("day2.edge_limits", "day2.gateway_choice", "day2.rollout_policy", "day2.kong_bundle",
             "day2.mesh_resilience")
EDGE_CLASSES = ("app", "partner", "anonymous")
EDGE_KEYS = ("ip", "subject", "header:x-api-key")

REQUIREMENTS = {
    "R1": "per-consumer quotas and API keys for external developers",
    "R2": "mutual TLS between every pair of services, with workload identities",
    "R4": "two SREs run the whole platform",
    "R5": "a partner developer portal with self-service API keys",
    "R6": "three services behind one public hostname",
    "R7": "retries, timeouts and outlier ejection between services without code changes",
    "R8": "JWT validation and request transformation for the public API at the edge",
    "R9": "canary releases of internal services on east-west traffic",
    "R10": "a static marketing site served from one backend",
    "R11": "one team, one language, one deploy pipeline",
}
MESH_REQS = ("R2", "R7", "R9")
EDGE_REQS = ("R1", "R5", "R8")
CONTEXT_REQS = ("R4", "R6", "R10", "R11")
CHOICES = ("kong", "istio", "both", "neither")

# the notebooks' worked examples: what a copied answer would use
EXAMPLE_EDGE_LIMITS = {"auth_at": "edge", "limits": {c: {"key": "ip", "rate_per_s": 20.0, "burst": 10}
                                                    for c in EDGE_CLASSES}}
EXAMPLE_ROLLOUT = {"steps_percent": [100], "step_s": 60, "max_error_rate": 0.01, "failed_checks_to_rollback": 1,
                   "retry": {"attempts": 3, "budget": None},
                   "outlier": {"consecutive_5xx": 5, "base_ejection_s": 30, "max_ejection_percent": 10}}
EXAMPLE_KONG_BUNDLE = """\
apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata: {name: products-per-ip}
plugin: rate-limiting
config: {second: 5, limit_by: ip, policy: local}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: products
  annotations: {konghq.com/plugins: products-per-ip}
spec:
  rules: [{matches: [{path: {type: PathPrefix, value: /api/products}}], backendRefs: [{name: product, port: 8080}]}]
"""
EXAMPLE_MESH_POLICY = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: product}
spec:
  host: product
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}
"""


# ----- scenarios ----------------------------------------------------------------------------------
def scenario(exercise_id: str, variant: int | None = None) -> dict[str, Any]:
    """The current learner's scenario of a Day 2 exercise (variant 0 without a stamp)."""
    if exercise_id not in EXERCISES:
        raise ValueError(f"exercise_id: got {exercise_id!r}; valid: {', '.join(EXERCISES)}")
    v = variants.variant(exercise_id) if variant is None else variant
    rng = variants.rng(exercise_id, v)

    def pick(low, high, default, digits=1):
        return default if v == 0 else float(np.round(rng.uniform(low, high), digits))

    if exercise_id == "day2.edge_limits":
        users = 40 if v == 0 else int(rng.integers(25, 61))
        user_rate = pick(0.2, 0.6, 0.4, 2)
        partner = pick(4.0, 12.0, 8.0)
        crawlers = 3 if v == 0 else int(rng.integers(2, 5))
        crawler_rate = pick(4.0, 10.0, 6.0)
        legit = users * user_rate + partner
        capacity = float(np.round(legit / (0.45 if v == 0 else rng.uniform(0.4, 0.5)), 0))
        return {"users": users, "nat_addresses": 2 if v == 0 else int(rng.integers(1, 4)), "user_rate_per_s": user_rate,
                "abuser_rate_per_s": float(np.round(capacity * (1.2 if v == 0 else rng.uniform(1.0, 1.6)), 0)),
                "partner_rate_per_s": partner, "partner_burst_factor": 3.0, "crawlers": crawlers,
                "crawler_rate_per_s": crawler_rate, "backend_capacity_per_s": capacity,
                "max_utilisation": 0.8, "max_legit_rejected": 0.01, "duration_s": 60.0, "hidden_traces": 2}
    if exercise_id == "day2.gateway_choice":
        kinds = ["kong", "istio", "both", "neither", "kong", "istio"] if v == 0 else \
            ["kong", "istio", "both", "neither"] + [str(k) for k in rng.choice(["kong", "istio", "neither"], 2, replace=False)]
        order = list(range(6)) if v == 0 else list(rng.permutation(6))
        cards = {}
        for slot, i in enumerate(order):
            kind = kinds[i]
            reqs = []
            if kind in ("kong", "both"):
                reqs += list(rng.choice(EDGE_REQS, 1 if kind == "both" else int(rng.integers(1, 3)), replace=False))
            if kind in ("istio", "both"):
                reqs += list(rng.choice(MESH_REQS, 1 if kind == "both" else int(rng.integers(1, 3)), replace=False))
            reqs += list(rng.choice(CONTEXT_REQS, int(rng.integers(1, 3)) if kind == "neither" else int(rng.integers(0, 2)),
                                    replace=False))
            reqs = sorted({str(r) for r in reqs}, key=lambda r: int(r[1:]))
            card = {"requirements": reqs}
            if kind in ("istio", "both"):
                card["rate_per_s"] = float(rng.choice([200, 500, 800, 1200, 2000]))
                card["meshed_hops"] = int(rng.integers(2, 7))
            cards[f"card_{'abcdef'[slot]}"] = card
        return {"cards": cards, "requirements": dict(REQUIREMENTS), "hours_per_month": 730.0,
                "cost_tolerance": 0.15}
    if exercise_id == "day2.rollout_policy":
        return {"rate_per_s": pick(20.0, 60.0, 40.0, 0), "baseline_error_rate": 0.002,
                "bad_error_rate_range": [pick(0.02, 0.04, 0.03, 3), pick(0.08, 0.15, 0.10, 3)],
                "exposure_budget_errors": pick(15.0, 40.0, 25.0, 0), "rollout_limit_s": pick(600.0, 1200.0, 900.0, -1),
                "min_catch_rate": 0.95, "max_false_rollbacks": 0.05, "bad_replica_error_rate": pick(0.3, 0.7, 0.5, 2),
                "replicas": 4, "max_user_error_rate": 0.01, "max_amplification": 1.3, "hidden_seeds": 60}
    if exercise_id == "day2.kong_bundle":
        return {"anonymous_per_minute": int(pick(10, 30, 10, 0)), "tiers": {
                    "free": int(pick(30, 90, 60, 0)), "partner": int(pick(300, 900, 600, 0))},
                "consumers": {"alice": "free", "bob": "partner"} if v == 0 else
                    dict(zip(rng.choice(["alice", "bob", "carol", "dave"], 2, replace=False).tolist(), ["free", "partner"])),
                "routes": {"products": "/api/products", "orders": "/api/orders", "auth": "/api/auth/token"},
                "cache_ttl_s": int(pick(20, 120, 30, -1)) or 30,
                "header": ["X-Api-Product", "cloudmart-" + ("v1" if v == 0 else str(rng.choice(["gold", "retail", "b2b"])))]}
    # day2.mesh_resilience
    return {"rate_per_s": pick(150.0, 260.0, 200.0, 0), "replicas": 4, "servers_per_replica": 2,
            "service_ms": pick(4.0, 8.0, 5.0), "slow_factor": pick(8.0, 15.0, 10.0, 0),
            "bad_error_rate": pick(0.2, 0.5, 0.3, 2), "slo_p99_ms": pick(40.0, 70.0, 50.0, 0),
            "max_error_rate": 0.005, "max_amplification": 1.3, "n_requests": 3000, "hidden_seeds": 2}


def _factor(value: float, target: float, zero_at: float, higher_is_better: bool = False) -> float:
    """1 at or beyond the target, falling linearly to 0 at ``zero_at``."""
    if not math.isfinite(value):
        return 0.0
    if higher_is_better:
        return 1.0 if value >= target else max(0.0, (value - zero_at) / (target - zero_at))
    return 1.0 if value <= target else max(0.0, (zero_at - value) / (zero_at - target))


def _mapping(answer: Any, what: str) -> dict:
    if not isinstance(answer, dict):
        raise AnswerShapeError(f"answer: give {what} (a dict), got {type(answer).__name__}")
    return answer


# ----- day2.edge_limits ---------------------------------------------------------------------------
def edge_traces(s: dict, seed: int) -> list[dict]:
    """The clients' requests for one trace: ``[{"class", "ip", "subject", "api_key", "legit", "t"}]``
    per client, ``t`` its sorted arrival times."""
    rng = np.random.default_rng(seed)
    d = s["duration_s"]

    def poisson(rate):
        n = rng.poisson(rate * d)
        return np.sort(rng.uniform(0, d, n))

    clients = []
    for u in range(s["users"]):
        clients.append({"class": "app", "ip": f"nat-{u % s['nat_addresses']}", "subject": f"user-{u}",
                        "api_key": "", "legit": True, "t": poisson(s["user_rate_per_s"])})
    clients.append({"class": "app", "ip": "abuser", "subject": "free-account-9", "api_key": "", "legit": False,
                    "t": poisson(s["abuser_rate_per_s"])})
    # the partner: on/off bursts of 2 s at burst_factor × its mean rate
    f = s["partner_burst_factor"]
    t = poisson(s["partner_rate_per_s"] * f)
    on = (np.floor(t / 2.0).astype(int) % int(f)) == 0
    clients.append({"class": "partner", "ip": "partner-1", "subject": "partner", "api_key": "pk-1", "legit": True,
                    "t": t[on]})
    for c in range(s["crawlers"]):
        clients.append({"class": "anonymous", "ip": f"crawler-{c}", "subject": "", "api_key": "", "legit": False,
                        "t": poisson(s["crawler_rate_per_s"])})
    return clients


def _edge_limits(answer: Any) -> tuple[str, dict]:
    import sim

    a = _mapping(answer, '{"auth_at": "edge"|"service", "limits": {class: {"key", "rate_per_s", "burst"}}}')
    auth_at = a.get("auth_at")
    if auth_at not in ("edge", "service"):
        raise AnswerShapeError(f"auth_at: got {auth_at!r}; valid: 'edge' or 'service'")
    limits = a.get("limits")
    if not isinstance(limits, dict):
        raise AnswerShapeError("limits: give one entry per client class: " + ", ".join(EDGE_CLASSES))
    unknown = sorted(set(map(str, limits)) - set(EDGE_CLASSES))
    if unknown:
        raise AnswerShapeError(f"limits: unknown class {unknown[0]!r}; valid: {', '.join(EDGE_CLASSES)}")
    out = {}
    for cls, lim in limits.items():
        if lim is None:
            out[cls] = None
            continue
        if not isinstance(lim, dict) or set(lim) - {"key", "rate_per_s", "burst"}:
            raise AnswerShapeError(f"limits[{cls!r}]: give {{'key', 'rate_per_s', 'burst'}} or None (no limit)")
        key = lim.get("key")
        if key not in EDGE_KEYS:
            raise AnswerShapeError(f"limits[{cls!r}].key: got {key!r}; valid: {', '.join(EDGE_KEYS)}")
        rate, burst = lim.get("rate_per_s"), lim.get("burst")
        if not _is_number(rate) or rate <= 0:
            raise AnswerShapeError(f"limits[{cls!r}].rate_per_s: got {rate!r}; valid: a number > 0")
        if not _is_number(burst) or burst < 1 or int(burst) != burst:
            raise AnswerShapeError(f"limits[{cls!r}].burst: got {burst!r}; valid: an integer >= 1")
        if key == "subject" and auth_at != "edge":
            key = "ip"  # the gateway never sees the subject: it can only key on what it has
        out[cls] = (key, sim.TokenBucket(float(rate), int(burst)))
    return auth_at, out


def _edge_outcome(s: dict, limits: dict, seed: int) -> dict:
    from sim.ratelimit import admitted_times

    buckets: dict[tuple, list] = {}
    for i, c in enumerate(edge_traces(s, seed)):
        lim = limits.get(c["class"])
        if lim is None:
            buckets.setdefault(("none", i), []).append((c, None))
            continue
        key, tb = lim
        value = {"ip": c["ip"], "subject": c["subject"], "header:x-api-key": c["api_key"]}[key]
        buckets.setdefault((c["class"], key, value), []).append((c, tb))
    admitted = legit_total = legit_rejected = 0
    for members in buckets.values():
        tb = members[0][1]
        times = np.concatenate([c["t"] for c, _ in members])
        owner = np.concatenate([np.full(c["t"].size, j) for j, (c, _) in enumerate(members)])
        order = np.argsort(times, kind="stable")
        times, owner = times[order], owner[order]
        if tb is None:
            ok = np.ones(times.size, dtype=bool)
        else:
            state = tb.new_state()
            ok = np.array([state.allow(t) for t in times.tolist()], dtype=bool)
        admitted += int(ok.sum())
        for j, (c, _) in enumerate(members):
            if c["legit"]:
                mine = owner == j
                legit_total += int(mine.sum())
                legit_rejected += int((~ok[mine]).sum())
    return {"utilisation": admitted / s["duration_s"] / s["backend_capacity_per_s"],
            "legit_rejected": legit_rejected / legit_total if legit_total else 0.0}


@exercise("day2.edge_limits", max_score=10)
def check_edge_limits(answer: Any, g: Grader) -> None:
    """Edge rate limits per client class; see the module docs and :func:`scenario`."""
    s = scenario("day2.edge_limits")
    auth_at, limits = _edge_limits(answer)
    runs = [_edge_outcome(s, limits, seed) for seed in variants.hidden_seeds("day2.edge_limits", s["hidden_traces"])]
    util = max(r["utilisation"] for r in runs)
    rejected = max(r["legit_rejected"] for r in runs)
    f_protect = _factor(util, s["max_utilisation"], 1.0)
    f_legit = _factor(rejected, s["max_legit_rejected"], 0.10)
    msg_u = f"backend utilisation {util:.2f} on the hidden traces (target < {s['max_utilisation']})"
    msg_r = f"{rejected:.1%} of legitimate requests rejected (target < {s['max_legit_rejected']:.0%})"
    (g.award if f_protect == 1 and f_legit == 1 else g.partial)(4 * f_protect * f_legit, msg_u)
    (g.award if f_protect == 1 and f_legit == 1 else g.partial)(4 * f_legit * f_protect, msg_r)
    app = limits.get("app")
    if app is not None and app[0] == "subject":
        g.partial(2 * f_protect * f_legit, "the NAT'd app class is keyed by subject") if f_protect * f_legit < 1 \
            else g.award(2, "the NAT'd app class is keyed by subject")
    else:
        g.miss("the app class's users share carrier-NAT addresses: an address key makes them share one bucket "
               "(and one abuser can empty it)" + (" — a subject key needs the token checked at the edge"
                                                  if auth_at == "service" else ""))
    if f_protect < 1:
        g.suggest("Add up the admitted rate of every bucket that the abusive and anonymous clients can fill, and "
                  "compare it with the backend's capacity.")
    elif f_legit < 1:
        g.suggest("A Poisson client exceeds its mean rate over short windows; size each bucket from the rate and "
                  "burst of the legitimate clients that share it.")


@grading.trivial("day2.edge_limits")
def _edge_trivial(v: int) -> dict[str, Any]:
    s = scenario("day2.edge_limits", v)
    return {"empty": {},
            "uniform: the same address limit on every class": {
                "auth_at": "edge", "limits": {c: {"key": "ip", "rate_per_s": 1.0, "burst": 1} for c in EDGE_CLASSES}},
            "extreme: no limits at all": {"auth_at": "edge", "limits": {c: None for c in EDGE_CLASSES}},
            "extreme: a subject key with the token checked in the service": {
                "auth_at": "service", "limits": {"app": {"key": "subject", "rate_per_s": s["user_rate_per_s"] * 5,
                                                         "burst": 10}, "partner": None, "anonymous": None}},
            "copied: the notebook's worked example": dict(EXAMPLE_EDGE_LIMITS)}


# ----- day2.gateway_choice ------------------------------------------------------------------------
def _right_choice(reqs) -> str:
    mesh, edge = bool(set(reqs) & set(MESH_REQS)), bool(set(reqs) & set(EDGE_REQS))
    return "both" if mesh and edge else "istio" if mesh else "kong" if edge else "neither"


def _card_cost(card: dict, hours: float) -> float:
    from sim.mesh import sidecar_cost

    return sidecar_cost(card["rate_per_s"], card["meshed_hops"], hours=hours)["usd"]


@exercise("day2.gateway_choice", max_score=11)
def check_gateway_choice(answer: Any, g: Grader) -> None:
    """Scenario cards → kong / istio / both / neither; see the module docs and :func:`scenario`."""
    s = scenario("day2.gateway_choice")
    a = _mapping(answer, '{card: {"choice", "because", "sidecar_usd_per_month"}}')
    unknown = sorted(set(map(str, a)) - set(s["cards"]))
    if unknown:
        raise AnswerShapeError(f"unknown card {unknown[0]!r}; valid: {', '.join(s['cards'])}")
    choices = because_ok = 0
    cost_right, cost_cards = 0, 0
    wrong_cards = []
    for name, card in s["cards"].items():
        ans = a.get(name)
        right = _right_choice(card["requirements"])
        if right in ("istio", "both"):
            cost_cards += 1
        if ans is None:
            wrong_cards.append(name)
            continue
        if not isinstance(ans, dict) or ans.get("choice") not in CHOICES:
            raise AnswerShapeError(f"{name}: give {{'choice': one of {', '.join(CHOICES)}, 'because': [...]}}")
        because = ans.get("because", [])
        if not isinstance(because, (list, tuple)) or not all(isinstance(x, str) for x in because):
            raise AnswerShapeError(f"{name}.because: give a list of requirement ids such as ['R2']")
        ok = ans["choice"] == right
        choices += ok
        if not ok:
            wrong_cards.append(name)
        deciding = set(card["requirements"]) & (set(MESH_REQS) | set(EDGE_REQS))
        cited = set(because)
        if ok and cited and cited <= set(card["requirements"]) and (
                (deciding and cited & deciding) or (not deciding and cited & set(CONTEXT_REQS))):
            because_ok += 1
        if right in ("istio", "both"):
            claimed = ans.get("sidecar_usd_per_month")
            truth = _card_cost(card, s["hours_per_month"])
            if ok and _is_number(claimed) and abs(claimed - truth) <= s["cost_tolerance"] * truth:
                cost_right += 1
    n = len(s["cards"])
    (g.award if choices == n else g.partial)(choices, f"{choices}/{n} cards choose what the rule table requires")
    # the reasons and the cost count with the share of right choices: a tool everywhere earns little of them
    right_share = choices / n
    (g.award if because_ok == n else g.partial)(0.5 * because_ok * right_share,
                                                f"{because_ok}/{n} cards cite a deciding requirement")
    share = cost_right / cost_cards if cost_cards else 1.0
    (g.award if share == 1 and right_share == 1 else g.partial)(
        2 * share * right_share, f"{cost_right}/{cost_cards} mesh cards' sidecar cost within 15 %")
    if wrong_cards:
        g.suggest("For each card ask which requirement only a gateway product or only a mesh can meet; "
                  "requirements about team size or scale alone decide nothing here.")
    elif share < 1:
        g.suggest("Each meshed hop passes two sidecars; price their CPU and memory with sim.mesh.sidecar_cost.")


@grading.trivial("day2.gateway_choice")
def _choice_trivial(v: int) -> dict[str, Any]:
    s = scenario("day2.gateway_choice", v)
    cards = s["cards"]
    every = sorted(REQUIREMENTS, key=lambda r: int(r[1:]))
    return {"empty": {},
            "uniform: both everywhere, citing everything": {c: {"choice": "both", "because": every,
                                                               "sidecar_usd_per_month": 0.0} for c in cards},
            "extreme: neither everywhere": {c: {"choice": "neither", "because": []} for c in cards},
            "copied: istio everywhere with the notebook's one-hop cost": {
                c: {"choice": "istio", "because": ["R2"], "sidecar_usd_per_month": 19.0} for c in cards}}


# ----- day2.rollout_policy ------------------------------------------------------------------------
def _rollout(answer: Any) -> dict:
    a = _mapping(answer, "steps_percent, step_s, max_error_rate, failed_checks_to_rollback, retry, outlier")
    need = {"steps_percent", "step_s", "max_error_rate", "failed_checks_to_rollback", "retry", "outlier"}
    missing = sorted(need - set(a))
    if missing:
        raise AnswerShapeError(f"answer: missing {', '.join(missing)}")
    steps = a["steps_percent"]
    if not isinstance(steps, (list, tuple)) or not steps or len(steps) > 100:
        raise AnswerShapeError("steps_percent: give 1 to 100 increasing weights in (0, 100]")
    retry, outlier = a["retry"], a["outlier"]
    if not isinstance(retry, dict) or set(retry) - {"attempts", "budget"} or "attempts" not in retry:
        raise AnswerShapeError("retry: give {'attempts': int >= 1, 'budget': fraction or None}")
    if not isinstance(outlier, dict) or set(outlier) != {"consecutive_5xx", "base_ejection_s", "max_ejection_percent"}:
        raise AnswerShapeError("outlier: give {'consecutive_5xx', 'base_ejection_s', 'max_ejection_percent'}")
    return a


def _rollout_specs(a: dict, s: dict):
    import sim

    try:
        sc = dict(steps_percent=tuple(a["steps_percent"]), step_s=a["step_s"], rate_per_s=s["rate_per_s"],
                  max_error_rate=a["max_error_rate"], failed_checks_to_rollback=a["failed_checks_to_rollback"],
                  baseline=sim.Version(error_rate=s["baseline_error_rate"]), max_p99_ms=a.get("max_p99_ms", 500.0))
        sim.CanaryScenario(**sc)  # validate
        retry = sim.Retry(attempts=a["retry"]["attempts"], backoff_ms=25.0, max_backoff_ms=250.0,
                          budget=a["retry"].get("budget"), retry_other_host=True)
        od = sim.OutlierDetection(consecutive_5xx_errors=a["outlier"]["consecutive_5xx"],
                                  base_ejection_time_s=a["outlier"]["base_ejection_s"],
                                  max_ejection_percent=a["outlier"]["max_ejection_percent"])
    except (ValueError, TypeError) as err:
        raise AnswerShapeError(str(err)) from None
    return sc, retry, od


def rollout_outcomes(answer: Any, variant: int | None = None, seeds=None) -> dict:
    """What the grader measures for a rollout policy (on the hidden seeds unless ``seeds`` given)."""
    import sim

    s = scenario("day2.rollout_policy", variant)
    a = _rollout(answer)
    sc, retry, od = _rollout_specs(a, s)
    seeds = variants.hidden_seeds("day2.rollout_policy", s["hidden_seeds"]) if seeds is None else list(seeds)
    rng = np.random.default_rng(seeds[0])
    low, high = s["bad_error_rate_range"]
    contained, exposure, false_rb, times = [], [], [], []
    for i, seed in enumerate(seeds):
        bad = sim.simulate_canary(sim.CanaryScenario(canary=sim.Version(error_rate=float(rng.uniform(low, high))), **sc),
                                  seed)
        exposure.append(bad.exposed_errors)
        contained.append(bad.rolled_back and bad.exposed_errors <= s["exposure_budget_errors"])
        good = sim.simulate_canary(sim.CanaryScenario(canary=sim.Version(error_rate=s["baseline_error_rate"]), **sc),
                                   seed + 1)
        false_rb.append(good.rolled_back)
        if not good.rolled_back:
            times.append(good.decided_at_s)
    out = {"contained": float(np.mean(contained)), "mean_exposure": float(np.mean(exposure)),
           "false_rollbacks": float(np.mean(false_rb)), "rollout_s": float(np.mean(times)) if times else math.inf}
    out.update(_retry_outcome(s, retry, od, seeds[0]))
    return out


def _retry_outcome(s: dict, retry, od, seed: int) -> dict:
    import networkx as nx

    import sim

    def graph(error_rate, replica_error_rate):
        gr = nx.DiGraph()
        gr.add_node("order", service_time=sim.Deterministic(1e-5), servers=10_000)
        node = dict(service_time=sim.Exponential(0.004), servers=8, replicas=s["replicas"], error_rate=error_rate)
        if replica_error_rate is not None:
            node["replica_error_rate"] = replica_error_rate
        gr.add_node("product", **node)
        gr.add_edge("order", "product", retry=retry if retry.attempts > 1 else None, outlier_detection=od)
        return sim.CallGraph(gr, warmup_fraction=0.0)

    bad = [s["bad_replica_error_rate"]] + [0.0] * (s["replicas"] - 1)
    r = sim.run(graph(0.0, tuple(bad)), seed=seed, rate_per_s=200, n_requests=3000)
    outage = sim.run(graph(1.0, None), seed=seed, rate_per_s=200, n_requests=3000)
    e = outage.edges.loc["order->product"]
    return {"user_error_rate": 1 - r.success_rate.value, "outage_amplification": e["attempts"] / e["calls"]}


@exercise("day2.rollout_policy", max_score=10)
def check_rollout_policy(answer: Any, g: Grader) -> None:
    """A canary rollout policy with retries and ejection; see the module docs and :func:`scenario`."""
    s = scenario("day2.rollout_policy")
    o = rollout_outcomes(answer)
    f_contained = _factor(o["contained"], s["min_catch_rate"], 0.5, higher_is_better=True)
    f_exposure = _factor(o["mean_exposure"], s["exposure_budget_errors"], 3 * s["exposure_budget_errors"])
    f_false = _factor(o["false_rollbacks"], s["max_false_rollbacks"], 0.3)
    f_time = _factor(o["rollout_s"], s["rollout_limit_s"], 2 * s["rollout_limit_s"])
    safety, speed = f_contained * f_exposure, f_false * f_time
    for pts, f, other, msg in (
            (3, f_contained, speed, f"{o['contained']:.0%} of hidden bad releases rolled back within the error budget"),
            (2, f_exposure, speed, f"mean exposure {o['mean_exposure']:.1f} errors (budget "
                                   f"{s['exposure_budget_errors']:g})"),
            (2, f_false, safety, f"{o['false_rollbacks']:.0%} of good releases rolled back (≤ 5 %)"),
            (2, f_time, safety, f"good releases promoted in {o['rollout_s']:.0f} s on average (limit "
                                f"{s['rollout_limit_s']:g} s)")):
        (g.award if f * other == 1 else g.partial)(pts * f * other, msg)
    retry_ok = o["user_error_rate"] <= s["max_user_error_rate"] and o["outage_amplification"] <= s["max_amplification"]
    msg = (f"one bad replica: callers see {o['user_error_rate']:.2%} errors; full outage: "
           f"{o['outage_amplification']:.2f}× attempts per call")
    (g.award if retry_ok else g.partial)(1.0 if retry_ok else 0.0, msg)
    if safety < 1:
        g.suggest("Work out how many canary requests, and so how many bad ones, each step exposes before a "
                  "failing check can act; sim.canary.detection_probability shows it over many seeds.")
    elif speed < 1:
        g.suggest("A gate right at the baseline's error rate fails good releases by chance; compare the gate with "
                  "the spread of an interval's error rate at the first weight.")
    elif not retry_ok:
        g.suggest("Retries without a budget multiply the load in an outage; a budget caps retries as a share "
                  "of requests.")


@grading.trivial("day2.rollout_policy")
def _rollout_trivial(v: int) -> dict[str, Any]:
    base = {"retry": {"attempts": 1, "budget": None},
            "outlier": {"consecutive_5xx": 5, "base_ejection_s": 30, "max_ejection_percent": 10}}
    return {"empty": {},
            "uniform: fifty equal steps": {**base, "steps_percent": list(range(2, 101, 2)), "step_s": 60,
                                          "max_error_rate": 0.01, "failed_checks_to_rollback": 1},
            "extreme: a zero-error gate": {**base, "steps_percent": [5, 10, 25, 50, 100], "step_s": 60,
                                          "max_error_rate": 0.0, "failed_checks_to_rollback": 1},
            "copied: the notebook's one step at 100 %": dict(EXAMPLE_ROLLOUT)}


# ----- YAML helpers -------------------------------------------------------------------------------
def _docs(answer: Any, what: str) -> list[dict]:
    docs = yaml_documents(answer, f"answer: give {what} as YAML text (a str with one or more documents)")
    if not docs:
        raise AnswerShapeError(f"answer: no documents; give {what}")
    for d in docs:
        if not isinstance(d, dict) or not isinstance(d.get("metadata"), dict) or "name" not in d["metadata"]:
            raise AnswerShapeError("every YAML document must be a mapping with metadata.name")
    return docs


# ----- day2.kong_bundle ---------------------------------------------------------------------------
_KONG_API = "configuration.konghq.com/v1"
_KONG_KINDS = {"KongPlugin", "KongClusterPlugin", "KongConsumer"}
_KEY_AUTH_FIELDS = {"key_names", "key_in_header", "key_in_query", "key_in_body", "hide_credentials", "anonymous",
                    "run_on_preflight"}
_PROXY_CACHE_FIELDS = {"strategy", "cache_ttl", "content_type", "request_method", "response_code", "cache_control",
                       "memory", "vary_headers", "vary_query_params", "ignore_uri_case", "storage_ttl"}
_TRANSFORMER_FIELDS = {"add", "append", "remove", "replace", "rename", "http_method"}


def _route_path(route: dict) -> str | None:
    for rule in (route.get("spec") or {}).get("rules") or []:
        for match in rule.get("matches") or []:
            value = (match.get("path") or {}).get("value")
            if value:
                return value
    return None


def _plugins_of(obj: dict) -> list[str]:
    annotation = ((obj.get("metadata") or {}).get("annotations") or {}).get("konghq.com/plugins", "")
    return [p.strip() for p in str(annotation).split(",") if p.strip()]


def kong_conformance(answer: Any, variant: int | None = None, seed: int | None = None) -> dict:
    """What the grader checks in a Kong bundle: validity, per-limit conformance cases, auth, cache, header."""
    import sim
    from cluster.dataplane import kong
    from cluster.dataplane.errors import ResourceError

    s = scenario("day2.kong_bundle", variant)
    docs = _docs(answer, "KongPlugin, KongConsumer and HTTPRoute resources")
    problems: list[str] = []
    plugins, consumers, routes = {}, {}, {}
    for d in docs:
        kind, name = d.get("kind"), d["metadata"]["name"]
        if kind in _KONG_KINDS:
            if d.get("apiVersion") != _KONG_API:
                problems.append(f"{kind} {name}: apiVersion must be {_KONG_API}")
            if kind == "KongConsumer":
                if not d.get("username"):
                    problems.append(f"KongConsumer {name}: username is required")
                consumers[str(d.get("username") or name)] = d
            else:
                if d.get("plugin") not in kong.KNOWN_PLUGINS:
                    problems.append(f"{kind} {name}: plugin {d.get('plugin')!r} is not a Kong plugin")
                plugins[name] = d
        elif kind == "HTTPRoute":
            routes[_route_path(d) or name] = d
        elif kind == "Secret":
            continue
        else:
            problems.append(f"{kind} {name}: not part of a Kong bundle (KongPlugin, KongClusterPlugin, KongConsumer, "
                            "HTTPRoute, Secret)")
    valid_crds = not problems
    # plugin configs: the translator's rules for rate-limiting, Kong's documented fields for the others
    report = kong.TranslationReport()
    limits: dict[str, tuple] = {}
    for name, p in plugins.items():
        cfg = p.get("config") or {}
        if not isinstance(cfg, dict):
            problems.append(f"KongPlugin {name}: config must be a mapping")
            continue
        fields = {"key-auth": _KEY_AUTH_FIELDS, "proxy-cache": _PROXY_CACHE_FIELDS,
                  "request-transformer": _TRANSFORMER_FIELDS}.get(p.get("plugin"))
        try:
            if p.get("plugin") == "rate-limiting":
                limits[name] = (kong._rate_limits(p, report), cfg.get("limit_by", "consumer"))
            elif fields is not None and set(cfg) - fields:
                problems.append(f"KongPlugin {name}: config.{sorted(set(cfg) - fields)[0]} is not a field of "
                                f"{p['plugin']}")
        except ResourceError as err:
            problems.append(str(err))
    valid_configs = valid_crds and not problems
    path_of = {v: k for k, v in s["routes"].items()}
    attached = {path_of.get(path, path): _plugins_of(r) for path, r in routes.items()}
    global_plugins = [n for n, p in plugins.items() if p.get("kind") == "KongClusterPlugin"
                      and ((p["metadata"].get("labels") or {}).get("global") == "true")]
    for route in attached:
        attached[route] = attached[route] + global_plugins

    def route_plugins(route, kind):
        return [plugins[n] for n in attached.get(route, []) if n in plugins and plugins[n].get("plugin") == kind]

    # conformance cases: (label, limit expected, RateLimit windows that apply)
    cases = []
    anon = [lim for p in route_plugins("products", "rate-limiting") for lim in [limits.get(p["metadata"]["name"])]
            if lim and lim[1] == "ip"]
    cases.append(("anonymous per address on products", s["anonymous_per_minute"], [rl for lim in anon for rl in lim[0]]))
    for user, tier in s["consumers"].items():
        c = consumers.get(user)
        mine = [limits[n] for n in (_plugins_of(c) if c else []) if n in limits and limits[n][1] in ("consumer", "credential")]
        cases.append((f"{user} ({tier}) on orders", s["tiers"][tier], [rl for lim in mine for rl in lim[0]]))
    seed = variants.hidden_seeds("day2.kong_bundle", 1)[0] if seed is None else seed
    rng = np.random.default_rng(seed)
    results = []
    for label, expected, rls in cases:
        minutes = 3
        rate = 2 * expected / 60.0
        t = np.sort(rng.uniform(0, 60 * minutes, rng.poisson(rate * 60 * minutes)))
        ok = np.ones(t.size, dtype=bool)
        for rl in rls:
            fw = sim.FixedWindow(rl.max_tokens, rl.fill_interval_s)
            state = fw.new_state()
            ok &= np.array([state.allow(x) for x in t.tolist()], dtype=bool) if t.size else ok
        per_minute = np.bincount((t[ok] // 60).astype(int), minlength=minutes)[:minutes]
        offered = np.bincount((t // 60).astype(int), minlength=minutes)[:minutes]
        good = all(a <= expected and a >= 0.95 * min(expected, o) for a, o in zip(per_minute, offered))
        results.append((label, bool(good), per_minute.tolist(), expected))
    auth_ok = bool(route_plugins("orders", "key-auth") or route_plugins("orders", "jwt")) and not (
        route_plugins("auth", "key-auth") or route_plugins("auth", "jwt"))
    cache = route_plugins("products", "proxy-cache")
    cache_ok = bool(cache) and all(
        (p.get("config") or {}).get("cache_ttl") == s["cache_ttl_s"]
        and "GET" in (p.get("config") or {}).get("request_method", ["GET", "HEAD"])
        and (p.get("config") or {}).get("strategy", "memory") == "memory" for p in cache) and not route_plugins(
        "orders", "proxy-cache")
    header = ":".join(s["header"])
    header_ok = any(header in [str(h).replace(" ", "") for h in ((p.get("config") or {}).get("add") or {}).get("headers", [])]
                    for p in route_plugins("orders", "request-transformer"))
    return {"valid_crds": valid_crds, "valid_configs": valid_configs, "problems": problems, "cases": results,
            "share": sum(r[1] for r in results) / len(results), "auth": auth_ok, "cache": cache_ok,
            "header": header_ok}


@exercise("day2.kong_bundle", max_score=10)
def check_kong_bundle(answer: Any, g: Grader) -> None:
    """A Kong API product as KongPlugin/KongConsumer/HTTPRoute YAML; see the module docs."""
    c = kong_conformance(answer)
    share = c["share"]
    (g.award if c["valid_crds"] and share == 1 else g.partial)(
        share if c["valid_crds"] else 0, "valid Kong resources" if c["valid_crds"] else c["problems"][0])
    (g.award if c["valid_configs"] and share == 1 else g.partial)(
        share if c["valid_configs"] else 0,
        "plugin configs valid" if c["valid_configs"] else (c["problems"] or ["invalid resources"])[0])
    for label, ok, per_minute, expected in c["cases"]:
        (g.award if ok else g.partial)(3 * ok / len(c["cases"]),
                                       f"{label}: admitted per minute {per_minute} for a limit of {expected}")
    for pts, key, msg in ((2, "auth", "key-auth on orders, the token route open"),
                          (2, "cache", "products cached with the variant's TTL, orders never"),
                          (1, "header", "the product header added on orders")):
        if c[key]:
            (g.award if share == 1 else g.partial)(pts * share, msg)
        else:
            g.miss("missing or wrong: " + msg)
    if share < 1:
        g.suggest("Per-tier limits in Kong are rate-limiting plugins attached to each KongConsumer "
                  "(konghq.com/plugins) with limit_by: consumer; the public limit sits on the route, by ip.")


@grading.trivial("day2.kong_bundle")
def _kong_trivial(v: int) -> dict[str, Any]:
    s = scenario("day2.kong_bundle", v)
    uniform = f"""\
apiVersion: {_KONG_API}
kind: KongClusterPlugin
metadata: {{name: everyone, labels: {{global: "true"}}}}
plugin: rate-limiting
config: {{minute: 100, limit_by: ip}}
"""
    extreme = f"""\
apiVersion: {_KONG_API}
kind: KongPlugin
metadata: {{name: nobody}}
plugin: rate-limiting
config: {{second: 1, limit_by: service}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: orders, annotations: {{konghq.com/plugins: nobody}}}}
spec: {{rules: [{{matches: [{{path: {{type: PathPrefix, value: {s['routes']['orders']}}}}}]}}]}}
"""
    return {"empty": "",
            "uniform: one global limit for everything": uniform,
            "extreme: one request per second for the whole route": extreme,
            "copied: the notebook's per-address example": EXAMPLE_KONG_BUNDLE}


# ----- day2.mesh_resilience -----------------------------------------------------------------------
_SERVICES = {"product", "order", "inventory", "payment", "user", "auth", "notification", "frontend"}


def _mesh_edge(answer: Any) -> dict:
    """Translate the learner's DestinationRule/VirtualService for product into sim edge attributes."""
    import sim
    from cluster.dataplane import istio
    from cluster.dataplane.errors import ResourceError

    docs = _docs(answer, "a DestinationRule and a VirtualService for product")
    policy, routes = None, None
    try:
        for d in docs:
            istio.check_supported(d)
            kind = d.get("kind")
            if kind == "DestinationRule":
                host, p = istio.destination_rule(d)
                if host != "product":
                    raise AnswerShapeError(f"DestinationRule {d['metadata']['name']}: host {host!r}; valid: product")
                policy = p
            elif kind == "VirtualService":
                hosts, rs = istio.virtual_service(d, _SERVICES)
                if hosts != ["product"]:
                    raise AnswerShapeError(f"VirtualService {d['metadata']['name']}: hosts {hosts}; valid: [product]")
                routes = rs
            else:
                raise AnswerShapeError(f"{kind} {d['metadata']['name']}: only a DestinationRule and a VirtualService "
                                       "are graded here")
    except ResourceError as err:
        raise AnswerShapeError(str(err)) from None
    edge: dict = {}
    lb = "round_robin"
    if policy is not None:
        cb = policy.circuit_breaker
        if cb is not None:
            edge["connection_pool"] = sim.ConnectionPool(
                max_connections=cb.max_connections or 2**31 - 1,
                http1_max_pending_requests=cb.max_pending_requests if cb.max_pending_requests is not None else 2**31 - 1,
                http2_max_requests=cb.max_requests, max_retries=cb.max_retries)
        od = policy.outlier_detection
        if od is not None and od.consecutive_5xx:
            edge["outlier_detection"] = sim.OutlierDetection(
                consecutive_5xx_errors=od.consecutive_5xx, interval_s=od.interval_s,
                base_ejection_time_s=od.base_ejection_time_s, max_ejection_percent=float(od.max_ejection_percent),
                min_health_percent=float(od.min_health_percent or 0))
        lb = {"ROUND_ROBIN": "round_robin", "LEAST_REQUEST": "least_request", "RANDOM": "random"}.get(policy.lb_policy,
                                                                                                     "round_robin")
    route = routes[0] if routes else None
    retry = istio.DEFAULT_RETRY if route is None else route.retry
    if retry is not None:
        edge["retry"] = sim.Retry(attempts=retry.attempts + 1, backoff_ms=25.0, max_backoff_ms=250.0,
                                  retry_other_host=True)
        if retry.per_try_timeout_s:
            edge["timeout_ms"] = retry.per_try_timeout_s * 1000.0
    if route is not None and route.timeout_s:
        edge["route_timeout_ms"] = route.timeout_s * 1000.0
    if route is not None and route.fault is not None:
        raise AnswerShapeError("VirtualService: a fault belongs in the fault-injection lesson, not in the "
                               "production policy graded here")
    return {"edge": edge, "load_balancer": lb}


def mesh_outcome(answer: Any, variant: int | None = None, seeds=None) -> dict:
    """p99, error rate and retry amplification of order→product under the variant's profile."""
    import networkx as nx

    import sim

    s = scenario("day2.mesh_resilience", variant)
    cfg = _mesh_edge(answer)
    seeds = [0, *variants.hidden_seeds("day2.mesh_resilience", s["hidden_seeds"])] if seeds is None else list(seeds)
    svc = s["service_ms"] / 1000.0
    per_time = (sim.LogNormal(svc * s["slow_factor"], 0.5),) + tuple(sim.LogNormal(svc, 0.5) for _ in range(s["replicas"] - 1))
    per_err = (0.0, s["bad_error_rate"]) + (0.0,) * (s["replicas"] - 2)
    p99, err, amp = [], [], []
    for seed in seeds:
        gr = nx.DiGraph()
        gr.add_node("order", service_time=sim.Deterministic(1e-5), servers=10_000)
        gr.add_node("product", service_time=sim.LogNormal(svc, 0.5), servers=s["servers_per_replica"],
                    replicas=s["replicas"], replica_service_time=per_time, replica_error_rate=per_err,
                    load_balancer=cfg["load_balancer"])
        gr.add_edge("order", "product", hop_delay_ms=0.2, **cfg["edge"])
        r = sim.run(sim.CallGraph(gr, warmup_fraction=0.05), seed=int(seed) % 2**31, rate_per_s=s["rate_per_s"],
                    n_requests=s["n_requests"])
        e = r.edges.loc["order->product"]
        p99.append(r.p99_latency_ms.value)
        err.append(1 - r.success_rate.value)
        amp.append(e["attempts"] / e["calls"])
    return {"p99_ms": float(max(p99)), "error_rate": float(max(err)), "amplification": float(max(amp)), "runs": len(seeds)}


@exercise("day2.mesh_resilience", max_score=9)
def check_mesh_resilience(answer: Any, g: Grader) -> None:
    """DestinationRule + VirtualService for order→product; see the module docs and :func:`scenario`."""
    s = scenario("day2.mesh_resilience")
    o = mesh_outcome(answer)
    f_p99 = _factor(o["p99_ms"], s["slo_p99_ms"], 3 * s["slo_p99_ms"])
    f_err = _factor(o["error_rate"], s["max_error_rate"], 0.05)
    f_amp = _factor(o["amplification"], s["max_amplification"], 2.0)
    for pts, f, other, msg in (
            (3, f_p99, f_err, f"p99 {o['p99_ms']:.1f} ms on the shown and hidden runs (SLO {s['slo_p99_ms']:g} ms)"),
            (3, f_err, f_p99, f"error rate {o['error_rate']:.2%} (target ≤ {s['max_error_rate']:.1%})"),
            (2, f_amp, f_err, f"{o['amplification']:.2f} attempts per call (≤ {s['max_amplification']}×)")):
        (g.award if f * other == 1 else g.partial)(pts * f * other, msg)
    mean = (f_p99 * f_err + f_err * f_p99 + f_amp * f_err) / 3
    (g.award if mean == 1 else g.partial)(mean, "the resources translate cleanly for the local data plane")
    if f_p99 < 1:
        g.suggest("One replica is many times slower: a per-try timeout a little above a healthy replica's tail, "
                  "with a retry to another host, bounds the tail; ejection keeps the slow one out.")
    elif f_err < 1:
        g.suggest("Count the failures a caller still sees after its retries, and what the connection pool refuses "
                  "at this load.")
    elif f_amp < 1:
        g.suggest("Each retry is another request on product; eject the failing replica instead of retrying into it.")


@grading.trivial("day2.mesh_resilience")
def _mesh_trivial(v: int) -> dict[str, Any]:
    tiny = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: product}
spec:
  host: product
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
"""
    no_retry = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: product}
spec:
  hosts: [product]
  http: [{route: [{destination: {host: product}}], retries: {attempts: 0}}]
"""
    return {"empty": "",
            "uniform: every pool limit at 1": tiny,
            "extreme: no retries and no ejection": no_retry,
            "copied: Istio's circuit-breaking task settings": EXAMPLE_MESH_POLICY}
