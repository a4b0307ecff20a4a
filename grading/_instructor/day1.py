"""Reference solutions of the Day 1 exercises (see :mod:`grading._instructor`).

The checks of :mod:`grading.day1` import this module inside the check, so none of these
names is reachable from ``grading.day1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

import sim
from grading import models, variants

# --------------------------------------------------------------------------------------------
# day1.tradeoffs
# --------------------------------------------------------------------------------------------


def tradeoffs_p99(s: Mapping[str, Any], hops: int, rate: float | None = None) -> float:
    """Exact p99 (ms) of ``hops`` M/M/1 stations in series with the hop delay each way."""
    lam = s["arrival_rate_per_s"] if rate is None else rate
    return models.tandem_mm1_quantile_ms(0.99, lam, s["service_time_ms_per_hop"], hops,
                                         2 * s["hop_delay_ms"])


def tradeoffs_reference(s: Mapping[str, Any]) -> dict[str, Any]:
    max_hops = 0
    while tradeoffs_p99(s, max_hops + 1) <= s["slo_p99_ms"]:
        max_hops += 1
    fits = s["checkout_hops"] <= max_hops
    arch = ("microservices" if fits and s["teams"] >= s["min_teams_for_microservices"]
            else "monolith")
    return {"architecture": arch, "p99_ms_at_load": tradeoffs_p99(s, s["checkout_hops"]),
            "max_hops_within_slo": max_hops}


# --------------------------------------------------------------------------------------------
# day1.decomposition
# --------------------------------------------------------------------------------------------

# CloudMart's contexts: one per service, each owning its data (database per service). The
# credential may sit with the customer who registers it (CloudMart's choice: the user service
# stores the password hashes and auth asks it) or with identity (tokens and keys).
IDENTITY_OWNS_CREDENTIAL = (
    frozenset({"Credential", "OAuthClient", "SigningKey"}),
    frozenset({"Customer", "Address"}),
)
CUSTOMER_OWNS_CREDENTIAL = (
    frozenset({"OAuthClient", "SigningKey"}),
    frozenset({"Customer", "Address", "Credential"}),
)
OTHER_CONTEXTS = (
    frozenset({"Product", "Category"}),
    frozenset({"StockItem", "Reservation"}),
    frozenset({"Order", "OrderLine"}),
    frozenset({"Payment", "Refund"}),
    frozenset({"Notification", "NotificationPreference"}),
)

# Where each requirement's entities may go: alternative placements, each a list of groups; a
# group that shares an entity with one of CloudMart's contexts joins it, else it is a context
# of its own. (Only the entities of the requirement are placed; the existing ones named in a
# group say which context it joins.)
PLACEMENTS: dict[str, list[list[frozenset[str]]]] = {
    # a scan updates its shipment (write-write); shipping only reads the order and the address
    "shipping": [[frozenset({"Shipment", "TrackingEvent"})]],
    # a review is written alone and only read with products: its own context or the catalogue
    "reviews": [[frozenset({"Review"})], [frozenset({"Review", "Product"})]],
    # redeeming checks and uses up a coupon's limit in one transaction
    "promotions": [[frozenset({"Coupon", "CouponRedemption"})]],
    # earning and spending points update the account and its ledger together
    "loyalty": [[frozenset({"LoyaltyAccount", "PointsEntry"})]],
    # a return and its lines are written together; it only reads the order
    "returns": [[frozenset({"ReturnRequest", "ReturnLine"})],
                [frozenset({"ReturnRequest", "ReturnLine", "Order"})]],
    # a wish list and its items are written together; it reads products and the customer
    "wishlists": [[frozenset({"Wishlist", "WishlistItem"})],
                  [frozenset({"Wishlist", "WishlistItem", "Customer"})]],
}


def _apply(base: tuple[frozenset[str], ...], groups: list[frozenset[str]],
           new: frozenset[str]) -> list[frozenset[str]]:
    parts = [set(p) for p in base]
    for group in groups:
        home = next((p for p in parts if p & group), None)
        if home is None:
            parts.append(set(group & new))
        else:
            home |= group & new
    return [frozenset(p) for p in parts]


def decomposition_references(s: Mapping[str, Any]) -> list[list[frozenset[str]]]:
    """Every partition accepted as the reference for the scenario ``s``."""
    new = frozenset(s["new_entities"])
    out: list[list[frozenset[str]]] = []
    bases = [IDENTITY_OWNS_CREDENTIAL + OTHER_CONTEXTS, CUSTOMER_OWNS_CREDENTIAL + OTHER_CONTEXTS]
    combos: list[list[frozenset[str]]] = [[]]
    for requirement in s["extension"]["requirements"]:
        combos = [c + alt for c in combos for alt in PLACEMENTS[requirement]]
    for base in bases:
        for groups in combos:
            out.append(_apply(base, groups, new))
    return out


def cloudmart_contexts() -> list[set[str]]:
    """CloudMart's own contexts (a copied answer that leaves the new requirements out)."""
    return [set(p) for p in IDENTITY_OWNS_CREDENTIAL + OTHER_CONTEXTS]


# --------------------------------------------------------------------------------------------
# day1.patterns
# --------------------------------------------------------------------------------------------

# Two descriptions per pattern, none naming it. A variant draws six patterns and one
# description of each, in a shuffled order under neutral ids; variant 0 shows the first
# description of every pattern.
PROBLEM_POOL: dict[str, tuple[str, str]] = {
    "saga": (
        "A hotel site holds the room, takes the deposit and credits the loyalty bonus, in three "
        "systems with records of their own. Last week a deposit bounced after the room was "
        "already held, and the room stayed blocked for days.",
        "Opening a bank account creates the customer in the core system, orders a card from a "
        "card vendor and adds the person to the CRM. When the card vendor refuses the person, "
        "the account and the CRM entry already exist, and nobody removes them."),
    "outbox": (
        "After a deployment a few hundred orders sit in 'new' for ever: the database has them, "
        "but the warehouse never heard of them. The logs show the service restarted right after "
        "saving them.",
        "During a ten-minute broker outage 300 people signed up and none of them got a welcome "
        "mail: the user service saved each of them, and had nowhere to keep the news it could "
        "not hand over."),
    "idempotency_key": (
        "On a flaky train connection the app shows a spinner, the customer taps 'Pay' once "
        "more, and the bank statement shows two identical debits for one basket.",
        "The payment provider calls our webhook and, when our answer is slow, calls it with the "
        "same body once more; the ledger then holds two bookings for one payment."),
    "event_sourcing": (
        "A regulator asks what an insurance policy looked like on 3 March and which change "
        "raised its premium; the policy table holds only today's values.",
        "For any warehouse bin, the dispute team must show every movement in and out for five "
        "years, and prove that the count on hand follows from those movements and nothing "
        "else."),
    "cqrs": (
        "The sales dashboard joins orders, payments and shipments every few seconds; on busy "
        "days its queries lock the tables checkout saves to, and checkouts slow down. The "
        "dashboard wants its figures pre-joined per day and region anyway.",
        "Product search filters by price, stock and rating thousands of times a second, while "
        "product edits are rare and pass strict checks; one table layout serves neither well."),
    "api_composition": (
        "The mobile order screen shows the order's status, each item's name and picture, and "
        "where the parcel is — kept by the order, catalogue and shipping teams' services — in "
        "one response.",
        "A customer's account page shows the profile, the last five orders and the unread "
        "messages, each owned by another team's service, always up to date."),
    "database_per_service": (
        "Renaming one column of the stock table took a month: four teams' code reads it, and "
        "all four had to release on the same night.",
        "The inventory team wants to keep stock counts in a faster store, but the order "
        "service's code runs SQL against the stock table directly."),
}
PATTERNS_PER_VARIANT = 6


def problems(v: int) -> tuple[dict[str, str], dict[str, str]]:
    """The problems of variant ``v`` under neutral ids, and the key: ``({id: text}, {id:
    pattern})``."""
    if v == 0:
        chosen = [(pattern, texts[0]) for pattern, texts in PROBLEM_POOL.items()]
    else:
        r = variants.rng("day1.patterns.problems", v)
        names = list(PROBLEM_POOL)
        picked = [names[i] for i in r.permutation(len(names))[:PATTERNS_PER_VARIANT]]
        chosen = [(pattern, PROBLEM_POOL[pattern][int(r.integers(0, 2))]) for pattern in picked]
    ids = [f"problem_{chr(ord('a') + i)}" for i in range(len(chosen))]
    return ({i: text for i, (_, text) in zip(ids, chosen)},
            {i: pattern for i, (pattern, _) in zip(ids, chosen)})


def pattern_key(v: int) -> dict[str, str]:
    return problems(v)[1]


def compensation_rate(failure_probability: list[float], compensation_failure_probability: float,
                      compensation_attempts: int) -> float:
    """The fraction of sagas that end compensated: a step after the first fails, and each of
    the completed steps' compensations succeeds within ``compensation_attempts`` tries (each
    try failing with ``compensation_failure_probability``)."""
    undo_ok = 1 - compensation_failure_probability ** compensation_attempts
    total, reached = 0.0, 1.0
    for j, p in enumerate(failure_probability):
        if j:
            total += reached * p * undo_ok ** j
        reached *= 1 - p
    return total


# --------------------------------------------------------------------------------------------
# day1.lab1_cost
# --------------------------------------------------------------------------------------------

MAX_REPLICAS_SEARCHED = 64


def replica_p99_ms(service: str, replicas: int, instance: str, s: Mapping[str, Any]) -> float:
    svc = s["services"][service]
    it = s["instance_types"][instance]
    return models.mmc_response_quantile_ms(
        0.99, svc["arrival_rate_per_s"] / replicas, svc["service_time_ms"] / it["speed"],
        int(it["vcpu"]),
    )


def cheapest_per_service(s: Mapping[str, Any]) -> dict[str, tuple[float, dict[str, Any]]]:
    out = {}
    for service in s["services"]:
        best = None
        for instance, it in s["instance_types"].items():
            for replicas in range(s["min_replicas"], MAX_REPLICAS_SEARCHED + 1):
                if replica_p99_ms(service, replicas, instance, s) <= s["slo_p99_ms"]:
                    cost = replicas * it["usd_per_h"]
                    if best is None or cost < best[0] - 1e-12:
                        best = (cost, {"replicas": replicas, "instance": instance})
                    break
        if best is None:  # pragma: no cover - guarded by a test of the scenario
            raise RuntimeError(f"no plan meets the SLO for {service}")
        out[service] = best
    return out


def cheapest_capacity_plan(s: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], float]:
    """The cheapest plan meeting the lab's SLO, found by exhaustive search, and its $/h."""
    best = cheapest_per_service(s)
    return {k: v[1] for k, v in best.items()}, sum(v[0] for v in best.values())


# --------------------------------------------------------------------------------------------
# day1.lab1_nodes
# --------------------------------------------------------------------------------------------

def nodes_needed(pods: list[sim.Pod], node_type: str) -> int | None:
    """First fit decreasing's node count (None: a pod fits on no node of the type)."""
    try:
        return len(sim.bin_pack(pods, node_type))
    except ValueError:
        return None


def allocatable(node_type: str) -> tuple[float, float]:
    """(cores, GiB) a node of ``node_type`` offers to pods (GKE's reservation taken off)."""
    inst = sim.PRICE_SHEET[node_type]
    cpu, mem = sim.gke_reserved(inst.vcpu, inst.memory_gib)
    return inst.vcpu - cpu, inst.memory_gib - mem


def _order(pods):
    return sorted(pods, key=lambda p: (-p.cpu_request_cores, -p.memory_request_gib, p.name))


def _place(pods, free: list[list[float]]) -> list[list] | None:
    """Place ``pods`` by the spread rule into ``free`` ([cores, GiB] per node, updated);
    the pods per node, or None when one finds no room."""
    placed: list[list] = [[] for _ in free]
    for pod in _order(pods):
        fits = [i for i, (c, m) in enumerate(free)
                if pod.cpu_request_cores <= c + 1e-9 and pod.memory_request_gib <= m + 1e-9]
        if not fits:
            return None
        i = max(fits, key=lambda k: (free[k][0], -k))
        free[i][0] -= pod.cpu_request_cores
        free[i][1] -= pod.memory_request_gib
        placed[i].append(pod)
    return placed


def spread(pods, node_type: str, nodes: int) -> list[list] | None:
    """The pods on each of ``nodes`` nodes as the scheduler spreads them (None: no room)."""
    cpu, mem = allocatable(node_type)
    return _place(pods, [[cpu, mem] for _ in range(nodes)])


def unschedulable_after_loss(pods, node_type: str, nodes: int) -> tuple[int, int] | None:
    """The first node whose loss leaves pods without room, and how many: ``(node, pods)``;
    None when the cluster survives the loss of any one node."""
    placed = spread(pods, node_type, nodes)
    if placed is None:
        raise ValueError("the pods do not fit with every node up")
    cpu, mem = allocatable(node_type)
    for lost in range(nodes):
        free = [[cpu - sum(p.cpu_request_cores for p in on),
                 mem - sum(p.memory_request_gib for p in on)]
                for k, on in enumerate(placed) if k != lost]
        evicted = placed[lost]
        if not evicted:
            continue
        if _place(evicted, free) is None:
            left = 0
            for pod in _order(evicted):  # count the pods that find no room, one by one
                if _place([pod], free) is None:
                    left += 1
            return lost, left
    return None


def resilient_nodes(pods, node_type: str, max_nodes: int) -> int | None:
    """The fewest nodes of ``node_type`` that hold the pods and survive any one node's loss."""
    cpu, mem = allocatable(node_type)
    if any(p.cpu_request_cores > cpu + 1e-9 or p.memory_request_gib > mem + 1e-9 for p in pods):
        return None
    n = max(2, math.ceil(sum(p.cpu_request_cores for p in pods) / cpu - 1e-9))
    while n <= max_nodes:
        if spread(pods, node_type, n) is not None and \
                unschedulable_after_loss(pods, node_type, n) is None:
            return n
        n += 1
    return None


def cheapest_node_plan(s: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
    """The cheapest ``{"node_type", "nodes"}`` that survives the loss of any one node."""
    from grading import day1

    pods = day1.lab1_pods(s)
    best = None
    for node_type in s["node_types"]:
        nodes = resilient_nodes(pods, node_type, day1._MAX_NODES)
        if nodes is None:
            continue
        cost = nodes * sim.PRICE_SHEET[node_type].on_demand_usd_per_h
        if best is None or cost < best[1] - 1e-12:
            best = ({"node_type": node_type, "nodes": nodes}, cost)
    if best is None:  # pragma: no cover - guarded by a test of the scenario
        raise RuntimeError("no node type holds the pods")
    return best


# --------------------------------------------------------------------------------------------
# day1.communication
# --------------------------------------------------------------------------------------------

def communication_reference(s: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """A full-marks choice: no wait where the result is not needed; where it is, retry only a
    call that is safe to repeat, that fails now and then, and whose tries end well within the
    timeout."""
    out = {}
    for e, spec in s["edges"].items():
        if not spec["needs_result"]:
            out[e] = "async"
        elif (spec.get("idempotent", True) and spec["error_rate"] > 0
              # every try timing out (exponential latency) stays well inside the error budget
              and math.exp(-s["retry_attempts"] * s["timeout_ms"] / spec["latency_ms"])
              <= s["max_error_rate"] / 10):
            out[e] = "sync_retry"
        else:
            out[e] = "sync"
    return out


# --------------------------------------------------------------------------------------------
# hidden scenarios
# --------------------------------------------------------------------------------------------

def hidden_rngs(exercise_id: str, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(seed) for seed in variants.hidden_seeds(exercise_id, n)]
