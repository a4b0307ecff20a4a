"""Day 1 exercises: microservices trade-offs, decomposition, patterns, capacity, communication.

Each exercise publishes its scenario as a constant (the notebook shows it to the learner) and a
check registered under its id. The docstring of every check says the *shape* of the answer;
``grading.check(exercise_id, answer)`` runs it.

==========================  ========  ============================================================
exercise id                 notebook  answer shape
==========================  ========  ============================================================
``day1.tradeoffs``          01        ``{"architecture": "monolith"|"microservices",
                                      "p99_ms_at_load": float, "max_hops_within_slo": int}``
``day1.decomposition``      02        ``{entity: context_name}`` for every entity of
                                      :data:`DECOMPOSITION_ITEMS` (CloudMart's entities and
                                      the new requirements' :data:`NEW_ENTITIES`), or a list
                                      of sets of entities
``day1.patterns``           03        ``{"patterns": {problem_id: pattern},
                                      "compensation_rate": float}``
``day1.lab1_cost``          04        ``{service: {"replicas": int, "instance": str}}``
``day1.communication``      05        ``{(caller, callee): "sync"|"async"|"request_reply"}``
                                      (keys may also be written ``"caller->callee"``)
``day1.challenge``          06        ``{"services": {name: {"replicas": int,
                                      "service_time_ms": float}},
                                      "edges": [(caller, callee, "sync"|"async"), ...]}``
==========================  ========  ============================================================
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

import sim
from grading import AnswerShapeError, Grader, _is_int, _is_number, exercise, models

__all__ = [
    "CHALLENGE_SCENARIO",
    "COMMUNICATION_MODES",
    "COMMUNICATION_SCENARIO",
    "DECOMPOSITION_ITEMS",
    "DOMAIN_MODEL",
    "NEW_ENTITIES",
    "INSTANCE_TYPES",
    "LAB1_COST_SCENARIO",
    "PATTERNS",
    "PATTERN_PROBLEMS",
    "SAGA_FAILURE_PROFILE",
    "TRADEOFFS_SCENARIO",
    "cheapest_capacity_plan",
    "decomposition_graph",
    "pairwise_f1",
    "simulate_challenge",
    "simulate_communication",
]

# Checks read private copies of the published scenarios (``_TRADEOFFS`` …): a learner who edits
# the shown one while exploring changes nothing about the grading.
# Fixed seed of every simulation a check runs: the same answer always gets the same score.
_SEED = 20261126
_REQUESTS = 10_000
_WORKERS = 256  # "enough" workers, where a model is about latency rather than capacity


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# --------------------------------------------------------------------------------------------
# day1.tradeoffs (notebook 01)
# --------------------------------------------------------------------------------------------

TRADEOFFS_SCENARIO: dict[str, Any] = {
    # Workload: Poisson arrivals of checkout requests.
    "arrival_rate_per_s": 50.0,
    # Microservices design: every service on the path is one M/M/1 station (exponential service
    # times with this mean); every hop into a service adds a fixed network delay each way.
    "service_time_ms_per_hop": 8.0,
    "hop_delay_ms": 1.0,
    # Services a checkout request crosses in the proposed microservices design.
    "checkout_hops": 4,
    # SLO on the end-to-end latency of a checkout.
    "slo_p99_ms": 200.0,
    # Organisation: teams that must ship independently, several times a week each.
    "teams": 4,
    "deploys_per_week_per_team": 5,
}
"""The Day 1 trade-off scenario: workload, latency budget and team (notebook 01)."""
_TRADEOFFS = copy.deepcopy(TRADEOFFS_SCENARIO)

# Rule of thumb taught in notebook 01: split into services only when several teams need to
# deploy independently AND the latency budget admits the hops the split adds.
_MIN_TEAMS_FOR_MICROSERVICES = 3


def _tradeoffs_reference() -> dict[str, Any]:
    s = _TRADEOFFS

    def p99(hops: int) -> float:
        return models.tandem_mm1_quantile_ms(
            0.99,
            s["arrival_rate_per_s"],
            s["service_time_ms_per_hop"],
            hops,
            2 * s["hop_delay_ms"],
        )

    max_hops = 0
    while p99(max_hops + 1) <= s["slo_p99_ms"]:
        max_hops += 1
    fits = s["checkout_hops"] <= max_hops
    arch = (
        "microservices" if fits and s["teams"] >= _MIN_TEAMS_FOR_MICROSERVICES else "monolith"
    )
    return {"architecture": arch, "p99_ms_at_load": p99(s["checkout_hops"]),
            "max_hops_within_slo": max_hops}


def _require_mapping(answer: Any, shape: str) -> Mapping:
    if not isinstance(answer, Mapping):
        raise AnswerShapeError(
            f"expected a dict shaped like {shape}, got {type(answer).__name__}"
        )
    return answer


def _require_keys(answer: Mapping, keys: tuple[str, ...], shape: str) -> None:
    missing = [k for k in keys if k not in answer]
    if missing:
        raise AnswerShapeError(
            f"the answer lacks key(s) {', '.join(map(repr, missing))}; expected {shape}"
        )


@exercise("day1.tradeoffs", max_score=10)
def check_tradeoffs(answer: Any, g: Grader) -> None:
    """Monolith or microservices for :data:`TRADEOFFS_SCENARIO`, backed by two predictions.

    Answer shape::

        {"architecture": "monolith" | "microservices",
         "p99_ms_at_load": float,       # p99 end-to-end latency (ms) of a checkout through
                                        # the microservices design (checkout_hops services in
                                        # series) at arrival_rate_per_s
         "max_hops_within_slo": int}    # the most services in series whose p99 still meets
                                        # slo_p99_ms at that load

    Scored against the simulator's prediction (M/M/1 tandem line, exact): the p99 within 10%
    (4 points, within 25%: 2), the hop budget (3 points, off by one: 1) and an architecture
    consistent with the team and the latency budget (3 points).
    """
    shape = ('{"architecture": "monolith"|"microservices", "p99_ms_at_load": float, '
             '"max_hops_within_slo": int}')
    answer = _require_mapping(answer, shape)
    _require_keys(answer, ("architecture", "p99_ms_at_load", "max_hops_within_slo"), shape)
    arch, p99, hops = (answer["architecture"], answer["p99_ms_at_load"],
                       answer["max_hops_within_slo"])
    if arch not in ("monolith", "microservices"):
        raise AnswerShapeError(
            f"architecture={arch!r} is invalid; it must be 'monolith' or 'microservices'"
        )
    if not _is_number(p99) or p99 <= 0:
        raise AnswerShapeError(f"p99_ms_at_load={p99!r} is invalid; it must be a number > 0 (ms)")
    if not _is_int(hops) or hops < 0:
        raise AnswerShapeError(
            f"max_hops_within_slo={hops!r} is invalid; it must be an integer >= 0"
        )
    ref = _tradeoffs_reference()

    err = abs(p99 - ref["p99_ms_at_load"]) / ref["p99_ms_at_load"]
    if err <= 0.10:
        g.award(4, f"p99 at load of {p99:.0f} ms matches the prediction within 10%")
    elif err <= 0.25:
        g.partial(2, f"p99 at load of {p99:.0f} ms is within 25% of the prediction, not 10%")
    else:
        g.miss(f"p99 at load of {p99:.0f} ms is off the prediction by more than 25%")
        low = p99 < ref["p99_ms_at_load"]
        g.suggest(
            "Every hop adds its own queueing delay, and the p99 of a sum is not the sum of means"
            + (": your figure looks like an average, not a tail." if low else
               ": did you add p99s of each hop? Tails rarely line up.")
        )

    if hops == ref["max_hops_within_slo"]:
        g.award(3, "hop budget within the SLO is right")
    elif abs(hops - ref["max_hops_within_slo"]) == 1:
        g.partial(1, "hop budget is off by one")
        g.suggest("Sweep the number of hops and take the largest whose p99 is still <= the SLO.")
    else:
        g.miss("hop budget is wrong")
        g.suggest("Sweep the number of hops and take the largest whose p99 is still <= the SLO.")

    if arch == ref["architecture"]:
        g.award(3, f"{arch} is consistent with the teams and the latency budget")
    else:
        g.miss(f"{arch} does not follow from the teams and the latency budget")
        g.suggest("Weigh both sides: how many teams must deploy independently, and does the "
                  "checkout path fit in the hop budget you computed?")


# --------------------------------------------------------------------------------------------
# day1.decomposition (notebook 02)
# --------------------------------------------------------------------------------------------

DOMAIN_MODEL: dict[str, Any] = yaml.safe_load(
    (Path(__file__).with_name("day1_domain.yaml")).read_text(encoding="utf-8")
)
"""CloudMart's domain model (notebook 02): ``entities`` (name: description) and ``operations``
(name: {entity: "w"|"r"}) — the use cases and what each reads and writes — plus ``extension``:
new requirements CloudMart does not implement yet, with their own ``entities`` and
``operations`` (which may touch the existing entities)."""
_DOMAIN = copy.deepcopy(DOMAIN_MODEL)

NEW_ENTITIES: tuple[str, ...] = tuple(sorted(DOMAIN_MODEL["extension"]["entities"]))
"""Entities of the new requirements: the ones the ``day1.decomposition`` exercise asks to place."""

DECOMPOSITION_ITEMS: tuple[str, ...] = tuple(sorted(
    {*DOMAIN_MODEL["entities"], *DOMAIN_MODEL["extension"]["entities"]}))
"""Entities to group into bounded contexts (notebook 02): CloudMart's and the new ones."""
_EXISTING = frozenset(DOMAIN_MODEL["entities"])

# How strongly one operation ties two entities: both written = one transaction (an invariant),
# one written and one read = a lookup, both read = a shared view.
_ACCESS_WEIGHT = {("w", "w"): 3.0, ("w", "r"): 1.0, ("r", "w"): 1.0, ("r", "r"): 0.5}

# CloudMart's contexts: one per service, each owning its data (database per service). The
# credential may sit with identity (CloudMart's choice: auth owns it, learning it from a
# users.registered event) or with the customer who registers it; both are accepted.
_IDENTITY_OWNS_CREDENTIAL = (
    frozenset({"Credential", "OAuthClient", "SigningKey"}),
    frozenset({"Customer", "Address"}),
)
_CUSTOMER_OWNS_CREDENTIAL = (
    frozenset({"OAuthClient", "SigningKey"}),
    frozenset({"Customer", "Address", "Credential"}),
)
_OTHER_CONTEXTS = (
    frozenset({"StockItem", "Reservation"}),
    frozenset({"Order", "OrderLine"}),
    frozenset({"Payment", "Refund"}),
    frozenset({"Notification", "NotificationPreference"}),
)
# The new requirements. A scan updates its shipment (write-write): shipping is one context, with
# a language of its own (carrier, parcel, scan) and an external carrier behind it; it only reads
# the order and the address. Redeeming checks and uses up a coupon's limit in one transaction
# (write-write): promotions is one context, reading the order and the customer. A review is
# written alone and only reads product, order and customer: the graph cannot tell whether it is
# a context of its own (moderation, its own load) or part of the catalogue; both are accepted.
_NEW_CONTEXTS = (
    frozenset({"Shipment", "TrackingEvent"}),
    frozenset({"Coupon", "CouponRedemption"}),
)
_REVIEWS_APART = (frozenset({"Product", "Category"}), frozenset({"Review"}))
_REVIEWS_IN_CATALOGUE = (frozenset({"Product", "Category", "Review"}),)
_REFERENCE_PARTITIONS: tuple[tuple[frozenset[str], ...], ...] = tuple(
    identity + catalogue + _OTHER_CONTEXTS + _NEW_CONTEXTS
    for identity in (_IDENTITY_OWNS_CREDENTIAL, _CUSTOMER_OWNS_CREDENTIAL)
    for catalogue in (_REVIEWS_APART, _REVIEWS_IN_CATALOGUE)
)


def _all_operations() -> dict[str, dict[str, str]]:
    return {**_DOMAIN["operations"], **_DOMAIN["extension"]["operations"]}


def decomposition_graph() -> nx.Graph:
    """The domain graph over CloudMart's and the new requirements' operations: entities as
    nodes; an edge's ``weight`` sums, over the operations that touch both ends, 3 if both are
    written, 1 if one is written and the other read, 0.5 if both are only read."""
    graph = nx.Graph()
    graph.add_nodes_from(DECOMPOSITION_ITEMS)
    for touched in _all_operations().values():
        for (a, mode_a), (b, mode_b) in itertools.combinations(sorted(touched.items()), 2):
            w = _ACCESS_WEIGHT[(mode_a, mode_b)]
            if graph.has_edge(a, b):
                graph[a][b]["weight"] += w
            else:
                graph.add_edge(a, b, weight=w)
    return graph


def _as_partition(answer: Any) -> tuple[list[set[str]], list[str]]:
    """The answer's contexts, and the new entities it leaves unplaced (sorted)."""
    shape = "{entity: context_name} for every entity, or a list of sets of entities"
    if isinstance(answer, Mapping):
        groups: dict[Any, set[str]] = {}
        for item, ctx in answer.items():
            if not isinstance(ctx, (str, int)):
                raise AnswerShapeError(
                    f"context name {ctx!r} of {item!r} is invalid; use a string"
                )
            groups.setdefault(ctx, set()).add(item)
        parts = list(groups.values())
        items = list(answer.keys())
    elif isinstance(answer, (list, tuple)):
        parts, items = [], []
        for group in answer:
            if isinstance(group, str) or not isinstance(group, (set, frozenset, list, tuple)):
                raise AnswerShapeError(
                    f"each bounded context must be a set of entities, got {group!r}; "
                    f"expected {shape}"
                )
            parts.append(set(group))
            items.extend(group)
    else:
        raise AnswerShapeError(f"expected {shape}, got {type(answer).__name__}")
    known = set(DECOMPOSITION_ITEMS)
    unknown = sorted(str(i) for i in items if i not in known)
    if unknown:
        raise AnswerShapeError(
            f"unknown entity name(s) {', '.join(unknown)}; the entities are "
            + ", ".join(DECOMPOSITION_ITEMS)
        )
    dupes = sorted({i for i in items if items.count(i) > 1})
    if dupes:
        raise AnswerShapeError(f"{', '.join(dupes)} appear(s) in more than one context")
    missing = sorted(_EXISTING - set(items))
    if missing:
        raise AnswerShapeError(f"every entity needs a context; missing: {', '.join(missing)}")
    return [p for p in parts if p], sorted(set(NEW_ENTITIES) - set(items))


def _same_context_pairs(parts: list[set[str]]) -> set[frozenset[str]]:
    return {frozenset((a, b)) for p in parts for a in p for b in p if a < b}


def _f1(got: set[frozenset[str]], ref: set[frozenset[str]]) -> float:
    if not got or not ref:
        return 0.0
    tp = len(got & ref)
    precision, recall = tp / len(got), tp / len(ref)
    return 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)


def pairwise_f1(parts: list[set[str]], reference: list[set[str]],
                among: frozenset[str] | None = None) -> float:
    """F1 of the pairs placed together, against the pairs placed together in ``reference``;
    with ``among``, only pairs with at least one entity in ``among`` count."""
    got, ref = _same_context_pairs(parts), _same_context_pairs(reference)
    if among is not None:
        got = {p for p in got if p & among}
        ref = {p for p in ref if p & among}
    return _f1(got, ref)


@exercise("day1.decomposition", max_score=10)
def check_decomposition(answer: Any, g: Grader) -> None:
    """Bounded contexts for CloudMart extended with new requirements (:data:`DOMAIN_MODEL` and
    its ``extension``, :func:`decomposition_graph`).

    Answer shape: either a mapping of every entity of :data:`DECOMPOSITION_ITEMS` to a context
    name, ``{"Customer": "customers", ...}``, or a list of sets of entities,
    ``[{"Customer", ...}, ...]``. Every entity CloudMart has must be placed; a new entity
    (:data:`NEW_ENTITIES`) left out counts as not placed.

    Scored by where the new entities go (pairwise F1 of pairs with a new entity against a
    reference placement, 5 points), whether CloudMart's contexts stay whole (pairwise F1 of the
    other pairs, 2 points), cohesion/coupling on the domain graph (modularity relative to the
    reference, 2 points; 1 point from 75%) and granularity (1 point for 6 to 12 contexts).
    """
    parts, unplaced = _as_partition(answer)
    full = parts + [{e} for e in unplaced]
    graph = decomposition_graph()
    new = frozenset(NEW_ENTITIES)
    existing_only = [p & _EXISTING for p in full]
    new_f1, old_f1, reference = max(
        ((pairwise_f1(full, [set(p) for p in ref], among=new),
          pairwise_f1(existing_only, [set(p) & _EXISTING for p in ref]),
          [set(p) for p in ref])
         for ref in _REFERENCE_PARTITIONS),
        key=lambda scored: scored[:2],
    )

    points = round(5 * new_f1 * 2) / 2
    if new_f1 >= 0.999:
        g.award(5, "the new entities sit with what they must stay consistent with, and apart "
                   "from the rest")
    elif len(unplaced) == len(NEW_ENTITIES):
        g.miss("the entities of the new requirements are not placed in any context")
    elif points > 0:
        g.partial(points, f"the new entities agree with the reference on {_pct(new_f1)} of "
                          f"their pairs (pairwise F1)")
    else:
        g.miss("the new entities share no pair with the reference placement")
    if unplaced:
        g.suggest(f"Place every entity of the new requirements ({', '.join(unplaced)}): for "
                  "each, look at which operations write it and with what, then decide whether "
                  "it joins one of CloudMart's contexts or starts a new one.")

    old_points = round(2 * old_f1 * 2) / 2
    if old_f1 >= 0.999:
        g.award(2, "CloudMart's existing contexts stay whole")
    elif old_points > 0:
        g.partial(old_points, f"CloudMart's entities agree with the reference on {_pct(old_f1)} "
                              f"of their pairs (pairwise F1)")
    else:
        g.miss("CloudMart's entities share no pair with the reference contexts")

    modularity = nx.community.modularity(graph, full, weight="weight")
    ref_modularity = nx.community.modularity(graph, reference, weight="weight")
    ratio = modularity / ref_modularity
    cut = [(a, b, w) for a, b, w in graph.edges(data="weight")
           if not any(a in p and b in p for p in full)]
    crossing = _pct(sum(w for *_, w in cut) / graph.size(weight="weight"))
    if ratio >= 0.95:
        g.award(2, f"cohesive contexts, loose coupling: modularity {modularity:.3f}, "
                   f"{crossing} of interaction weight crosses contexts")
    else:
        if ratio >= 0.75:
            g.partial(1, f"modularity {modularity:.3f} is fair but contexts could be more "
                         f"cohesive ({crossing} of interaction weight crosses contexts)")
        else:
            g.miss(f"modularity {modularity:.3f}: contexts are weakly cohesive or tightly "
                   f"coupled ({crossing} of interaction weight crosses contexts)")
        # a split invariant among the new entities is the more useful nudge
        heaviest = max(cut, key=lambda e: (e[2] >= 3 and bool({e[0], e[1]} & new), e[2],
                                           e[0], e[1]), default=None)
        if heaviest and heaviest[2] >= 3:
            g.suggest(f"Your contexts split {heaviest[0]!r} from {heaviest[1]!r}, which "
                      "operations write together; an invariant should live inside one context.")

    if 6 <= len(parts) <= 12:
        g.award(1, f"{len(parts)} contexts: neither a distributed monolith nor nano-services")
    else:
        g.miss(f"{len(parts)} context(s) is too {'few' if len(parts) < 6 else 'many'} for this "
               "domain")
        g.suggest("Think of one context per team-sized capability with its own language "
                  "(who owns a word like 'price' or 'reservation'?).")
    if new_f1 < 0.999:
        g.suggest("A new entity that is only written alone or with its own kind, and merely "
                  "reads others, need not join them: ask which team would own its language "
                  "and its rules.")
    if old_f1 < 0.999:
        g.suggest("A context is a capability one team owns with its own language and data; "
                  "entities that only look each other up (r) can live apart, and money, stock "
                  "and identity each have rules of their own.")


# --------------------------------------------------------------------------------------------
# day1.patterns (notebook 03)
# --------------------------------------------------------------------------------------------

PATTERNS: tuple[str, ...] = (
    "saga", "outbox", "idempotency_key", "event_sourcing", "cqrs", "api_composition",
    "database_per_service",
)
"""The patterns an answer to ``day1.patterns`` may name."""

PATTERN_PROBLEMS: dict[str, str] = {
    "order_spans_services": (
        "Placing an order must reserve stock, authorise the card and confirm the order, each "
        "in a different service with its own database; if the payment fails the reserved stock "
        "must be released."),
    "lost_events": (
        "The order service commits the order row and then publishes OrderCreated; if the "
        "process dies between the two, the event is lost and the order is stuck."),
    "double_charge": (
        "A mobile client times out and retries POST /api/orders; the customer must not end up "
        "with two orders or two charges."),
    "audit_history": (
        "Support must see exactly how an order reached its current state and rebuild it as it "
        "was at any past moment."),
    "read_heavy_history": (
        "The order-history page joins orders, payments and shipments, is read a hundred times "
        "more often than written, and needs its own denormalised read model."),
    "product_page": (
        "The product page shows details, stock and reviews, owned by three services, in one "
        "response to the browser."),
    "shared_schema": (
        "Teams block each other because every service reads and writes the same tables, and a "
        "column change needs four teams to agree."),
}
"""Problems to match with a pattern (notebook 03): ``{problem_id: description}``."""

_PATTERN_KEY: dict[str, str] = {
    "order_spans_services": "saga",
    "lost_events": "outbox",
    "double_charge": "idempotency_key",
    "audit_history": "event_sourcing",
    "read_heavy_history": "cqrs",
    "product_page": "api_composition",
    "shared_schema": "database_per_service",
}

SAGA_FAILURE_PROFILE: dict[str, Any] = {
    # The checkout saga's steps in order, with the probability that each step fails.
    "steps": ["reserve_inventory", "authorize_payment", "confirm_order"],
    "failure_probability": [0.02, 0.05, 0.03],
    # A saga compensates when a step fails after at least one earlier step succeeded: the
    # completed steps must be undone. A failure of the first step needs no compensation.
}
"""Failure profile of the checkout saga for the compensation-rate question (notebook 03)."""
_SAGA = copy.deepcopy(SAGA_FAILURE_PROFILE)


_RATE_TOLERANCE = 0.08


def _compensation_rate() -> float:
    p_fail = _SAGA["failure_probability"]
    all_ok = math.prod(1 - p for p in p_fail)
    return (1 - p_fail[0]) - all_ok  # first step succeeded, and some later one failed


@exercise("day1.patterns", max_score=10)
def check_patterns(answer: Any, g: Grader) -> None:
    """Match each problem of :data:`PATTERN_PROBLEMS` with a pattern, and predict a saga's cost.

    Answer shape::

        {"patterns": {problem_id: pattern, ...},   # every problem id; patterns from PATTERNS
         "compensation_rate": float}               # fraction (0..1) of checkouts that end in
                                                   # compensation for SAGA_FAILURE_PROFILE

    One point per correctly matched problem (7) and 3 points for a compensation rate within
    8% (relative) of the prediction — room for a Monte Carlo estimate of 10,000 sagas.
    """
    shape = '{"patterns": {problem_id: pattern}, "compensation_rate": float}'
    answer = _require_mapping(answer, shape)
    _require_keys(answer, ("patterns", "compensation_rate"), shape)
    chosen = answer["patterns"]
    if not isinstance(chosen, Mapping):
        raise AnswerShapeError(f"'patterns' must be a dict {{problem_id: pattern}}; got "
                               f"{type(chosen).__name__}")
    unknown = sorted(str(k) for k in chosen if k not in _PATTERN_KEY)
    if unknown:
        raise AnswerShapeError(f"unknown problem id(s) {', '.join(unknown)}; the ids are "
                               f"{', '.join(_PATTERN_KEY)}")
    bad = sorted(f"{k}={v!r}" for k, v in chosen.items() if v not in PATTERNS)
    if bad:
        raise AnswerShapeError(f"unknown pattern(s) {', '.join(bad)}; choose from "
                               f"{', '.join(PATTERNS)}")
    rate = answer["compensation_rate"]
    if not _is_number(rate) or not 0 <= rate <= 1:
        raise AnswerShapeError(f"compensation_rate={rate!r} is invalid; it must be a fraction "
                               "between 0 and 1")

    wrong = []
    for problem, pattern in _PATTERN_KEY.items():
        if chosen.get(problem) == pattern:
            g.award(1, f"{problem}: {pattern} fits")
        elif problem not in chosen:
            wrong.append(problem)
            g.miss(f"{problem}: no pattern chosen")
        else:
            wrong.append(problem)
            g.miss(f"{problem}: {chosen[problem]} does not solve this problem")
    if wrong:
        g.suggest(f"Re-read {wrong[0]!r}: which failure or coupling does it describe, and which "
                  "pattern exists to remove exactly that?")

    ref = _compensation_rate()
    total_failure = 1 - math.prod(1 - p for p in _SAGA["failure_probability"])
    if abs(rate - ref) <= _RATE_TOLERANCE * ref:
        g.award(3, f"compensation rate {_pct(rate)} matches the prediction")
    elif abs(rate - total_failure) <= 0.05 * total_failure:
        g.partial(1, f"compensation rate {_pct(rate)} counts every failed saga")
        g.suggest("A saga whose very first step fails has nothing to undo.")
    else:
        g.miss(f"compensation rate {_pct(rate)} is off the prediction by more than "
               f"{_pct(_RATE_TOLERANCE)}")
        g.suggest("Compensation happens when some step fails after an earlier one succeeded: "
                  "multiply the step probabilities along each such path.")


# --------------------------------------------------------------------------------------------
# day1.lab1_cost (notebook 04)
# --------------------------------------------------------------------------------------------

INSTANCE_TYPES: dict[str, dict[str, float]] = {
    # vcpu = worker processes per replica; speed divides the service time.
    "small": {"vcpu": 1, "speed": 1.0, "usd_per_h": 0.025},
    "medium": {"vcpu": 2, "speed": 1.0, "usd_per_h": 0.05},
    "large": {"vcpu": 4, "speed": 1.0, "usd_per_h": 0.10},
    "fast": {"vcpu": 2, "speed": 1.5, "usd_per_h": 0.07},
}
"""Instance types for the capacity lab: workers per replica, relative speed, price."""
_INSTANCES = copy.deepcopy(INSTANCE_TYPES)

LAB1_COST_SCENARIO: dict[str, Any] = {
    # Per service: Poisson arrival rate and mean (exponential) service time on a speed-1 CPU.
    "services": {
        "product": {"arrival_rate_per_s": 300.0, "service_time_ms": 12.0},
        "order": {"arrival_rate_per_s": 60.0, "service_time_ms": 45.0},
        "payment": {"arrival_rate_per_s": 60.0, "service_time_ms": 40.0},
        "inventory": {"arrival_rate_per_s": 150.0, "service_time_ms": 8.0},
    },
    "instance_types": INSTANCE_TYPES,
    # Every service must meet this p99 (wait + service); load is split evenly over replicas,
    # each replica an M/M/c queue with c = vcpu of its instance type.
    "slo_p99_ms": 200.0,
    # Availability: survive the loss of one replica.
    "min_replicas": 2,
    # Full credit within this margin of the cheapest plan that meets the SLO.
    "cost_tolerance": 0.10,
}
"""The capacity-planning lab (notebook 04): load per service, instance types, SLO."""
_LAB1 = copy.deepcopy(LAB1_COST_SCENARIO)

_MAX_REPLICAS_SEARCHED = 64


def _replica_p99_ms(service: str, replicas: int, instance: str) -> float:
    svc = _LAB1["services"][service]
    it = _INSTANCES[instance]
    return models.mmc_response_quantile_ms(
        0.99, svc["arrival_rate_per_s"] / replicas, svc["service_time_ms"] / it["speed"],
        int(it["vcpu"]),
    )


def cheapest_capacity_plan() -> tuple[dict[str, dict[str, Any]], float]:
    """The cheapest plan meeting the lab's SLO, found by exhaustive search, and its $/h."""
    plan, total = {}, 0.0
    s = _LAB1
    for service in s["services"]:
        best = None
        for instance, it in _INSTANCES.items():
            for replicas in range(s["min_replicas"], _MAX_REPLICAS_SEARCHED + 1):
                if _replica_p99_ms(service, replicas, instance) <= s["slo_p99_ms"]:
                    cost = replicas * it["usd_per_h"]
                    if best is None or cost < best[0]:
                        best = (cost, {"replicas": replicas, "instance": instance})
                    break
        if best is None:  # pragma: no cover - guarded by a test of the scenario
            raise RuntimeError(f"no plan meets the SLO for {service}")
        plan[service] = best[1]
        total += best[0]
    return plan, total


@exercise("day1.lab1_cost", max_score=10)
def check_lab1_cost(answer: Any, g: Grader) -> None:
    """A capacity plan for :data:`LAB1_COST_SCENARIO` that meets the SLO at low cost.

    Answer shape::

        {service: {"replicas": int, "instance": str}, ...}   # every service of the scenario;
                                                             # instance from INSTANCE_TYPES

    Each service's p99 is predicted for the plan (M/M/c per replica, Erlang C): 1.5 points per
    service that meets the SLO with at least ``min_replicas``. If all do, cost earns 4 points
    within ``cost_tolerance`` of the cheapest plan found by search, 2 within 50%, else 1.
    """
    s = _LAB1
    shape = '{service: {"replicas": int, "instance": str}} for ' + ", ".join(s["services"])
    answer = _require_mapping(answer, shape)
    unknown = sorted(str(k) for k in answer if k not in s["services"])
    if unknown:
        raise AnswerShapeError(f"unknown service(s) {', '.join(unknown)}; plan "
                               f"{', '.join(s['services'])}")
    _require_keys(answer, tuple(s["services"]), shape)
    for service, entry in answer.items():
        if not isinstance(entry, Mapping) or "replicas" not in entry or "instance" not in entry:
            raise AnswerShapeError(f"{service}: expected {{'replicas': int, 'instance': str}}, "
                                   f"got {entry!r}")
        r = entry["replicas"]
        if not _is_int(r) or r < 1:
            raise AnswerShapeError(f"{service}: replicas={r!r} is invalid; it must be an "
                                   "integer >= 1")
        if entry["instance"] not in _INSTANCES:
            raise AnswerShapeError(f"{service}: instance={entry['instance']!r} is unknown; "
                                   f"choose from {', '.join(_INSTANCES)}")

    all_ok = True
    for service in s["services"]:
        r, inst = int(answer[service]["replicas"]), answer[service]["instance"]
        p99 = _replica_p99_ms(service, r, inst)
        label = f"{service} ({r} x {inst})"
        if math.isinf(p99):
            all_ok = False
            g.miss(f"{label} is overloaded: utilisation >= 100%, the queue grows without bound")
            g.suggest("Check utilisation first: arrival rate x service time / (replicas x "
                      "workers x speed) must stay below 1.")
        elif p99 > s["slo_p99_ms"]:
            all_ok = False
            g.miss(f"{label}: p99 {p99:.0f} ms misses the {s['slo_p99_ms']:.0f} ms SLO")
            g.suggest("Near saturation the tail explodes; and no number of replicas brings p99 "
                      "below the p99 of the service time itself, but a faster CPU does.")
        elif r < s["min_replicas"]:
            all_ok = False
            g.miss(f"{label}: meets the SLO but cannot survive losing a replica")
            g.suggest(f"Every service needs at least {s['min_replicas']} replicas.")
        else:
            g.award(1.5, f"{label}: p99 {p99:.0f} ms meets the SLO")

    cost = sum(int(e["replicas"]) * _INSTANCES[e["instance"]]["usd_per_h"]
               for e in answer.values())
    if not all_ok:
        g.miss(f"cost ${cost:.3f}/h is not scored until every service meets the SLO")
        return
    _, min_cost = cheapest_capacity_plan()
    if cost <= min_cost * (1 + s["cost_tolerance"]) + 1e-9:
        g.award(4, f"cost ${cost:.3f}/h is within {_pct(s['cost_tolerance'])} of the cheapest "
                   "plan that meets the SLO")
    elif cost <= min_cost * 1.5:
        g.partial(2, f"cost ${cost:.3f}/h meets the SLO but is up to 50% above the cheapest plan")
        g.suggest("Try each instance type per service: pooling workers in one replica and "
                  "faster CPUs trade differently against price.")
    else:
        g.partial(1, f"cost ${cost:.3f}/h meets the SLO but is over 50% above the cheapest plan")
        g.suggest("Search: for each service and instance type, find the fewest replicas that "
                  "meet the SLO, then keep the cheapest.")


# --------------------------------------------------------------------------------------------
# day1.communication (notebook 05)
# --------------------------------------------------------------------------------------------

COMMUNICATION_MODES: tuple[str, ...] = ("sync", "async", "request_reply")
"""``sync``: HTTP call, the caller waits and a callee error fails the request.
``async``: fire-and-forget event on the broker; the caller does not wait and gets no result.
``request_reply``: request over the durable broker and the caller waits for the reply; a failed
delivery is redelivered (up to ``max_deliveries``) instead of failing the request."""

COMMUNICATION_SCENARIO: dict[str, Any] = {
    "entry": "order",
    "entry_service_time_ms": 10.0,
    "slo_p99_ms": 300.0,
    "max_error_rate": 0.01,
    # Per edge: what the call is for, whether the caller needs its result to answer the user,
    # the callee's mean (exponential) latency and its error rate during the incident.
    "edges": {
        ("order", "product"): {"purpose": "price lookup", "needs_result": True,
                               "latency_ms": 5.0, "error_rate": 0.0},
        ("order", "inventory"): {"purpose": "reserve stock (the response says whether it is "
                                            "reserved)", "needs_result": True,
                                 "latency_ms": 20.0, "error_rate": 0.05},
        ("order", "payment"): {"purpose": "authorise the card (the order is answered 202 "
                                          "pending)", "needs_result": False,
                               "latency_ms": 300.0, "error_rate": 0.01},
        ("order", "notification"): {"purpose": "confirmation e-mail", "needs_result": False,
                                    "latency_ms": 2000.0, "error_rate": 0.02},
    },
    "slowed_down": "notification",
    # Load on the entry service; one-way delays of an HTTP hop and of a hop via the broker.
    "rate_per_s": 20.0,
    "hop_delay_ms": 0.5,
    "broker_delay_ms": 2.0,
    "redelivery_after_ms": 50.0,
    "max_deliveries": 3,
}
"""The call graph of notebook 05 while ``notification`` slows down and ``inventory`` flaps."""
_COMMUNICATION = copy.deepcopy(COMMUNICATION_SCENARIO)


def _edge_key(key: Any) -> tuple[str, str] | None:
    if isinstance(key, tuple) and len(key) == 2:
        return (str(key[0]), str(key[1]))
    if isinstance(key, str) and "->" in key:
        a, b = key.split("->", 1)
        return (a.strip(), b.strip())
    return None


def _communication_graph(modes: Mapping[tuple[str, str], str]) -> sim.CallGraph:
    s = _COMMUNICATION
    graph = nx.DiGraph()
    # Latency, not capacity, is the point here: plenty of workers per service.
    graph.add_node(s["entry"], service_time=sim.Exponential(s["entry_service_time_ms"] / 1000),
                   servers=_WORKERS)
    for (a, b), spec in s["edges"].items():
        graph.add_node(b, service_time=sim.Exponential(spec["latency_ms"] / 1000),
                       servers=_WORKERS, error_rate=spec["error_rate"])
        mode = modes[(a, b)]
        if mode == "sync":
            graph.add_edge(a, b, mode="sync", hop_delay_ms=s["hop_delay_ms"])
        elif mode == "async":
            graph.add_edge(a, b, mode="async", hop_delay_ms=s["broker_delay_ms"])
        else:  # request_reply: via the broker both ways, failed deliveries redelivered
            graph.add_edge(a, b, mode="sync", hop_delay_ms=s["broker_delay_ms"],
                           retry=sim.Retry(attempts=s["max_deliveries"],
                                           backoff_ms=s["redelivery_after_ms"], multiplier=1.0,
                                           jitter=0.0))
    return sim.CallGraph(graph, entry=s["entry"], rate_per_s=s["rate_per_s"],
                         n_requests=_REQUESTS)


def simulate_communication(modes: Mapping[tuple[str, str], str]) -> dict[str, float]:
    """Run the incident of :data:`COMMUNICATION_SCENARIO` for a choice of ``modes`` per edge.

    A seeded :mod:`sim` call graph: the caller calls its callees one after another; ``async``
    is an event (the caller neither waits nor fails), ``request_reply`` a sync call over the
    broker whose failed deliveries are redelivered. Returns ``{"p99_ms", "error_rate"}``.
    """
    result = sim.run(_communication_graph(modes), seed=_SEED)
    return {"p99_ms": float(result.p99_latency_ms.value),
            "error_rate": float(1.0 - result.success_rate.value)}


@exercise("day1.communication", max_score=10)
def check_communication(answer: Any, g: Grader) -> None:
    """Choose how ``order`` talks to each callee in :data:`COMMUNICATION_SCENARIO`.

    Answer shape::

        {("order", "product"): "sync" | "async" | "request_reply",
         ("order", "inventory"): ..., ("order", "payment"): ..., ("order", "notification"): ...}
        # keys may also be strings "order->product"

    Scored by a seeded simulation of the incident: every edge whose result is needed is not
    fire-and-forget (4 points), user-facing p99 within the SLO (3 points; 1 within 1.5x) and
    user-facing error rate within ``max_error_rate`` (3 points; 1 within 3x).
    """
    s = _COMMUNICATION
    shape = ('{("order", callee): "sync"|"async"|"request_reply"} for callees '
             + ", ".join(b for _, b in s["edges"]))
    answer = _require_mapping(answer, shape)
    modes: dict[tuple[str, str], str] = {}
    for key, mode in answer.items():
        edge = _edge_key(key)
        if edge not in s["edges"]:
            raise AnswerShapeError(f"unknown edge {key!r}; the edges are "
                                   + ", ".join(f"{a}->{b}" for a, b in s["edges"]))
        if mode not in COMMUNICATION_MODES:
            raise AnswerShapeError(f"{key!r}: mode {mode!r} is invalid; choose from "
                                   + ", ".join(COMMUNICATION_MODES))
        modes[edge] = mode
    missing = [f"{a}->{b}" for a, b in s["edges"] if (a, b) not in modes]
    if missing:
        raise AnswerShapeError(f"choose a mode for every edge; missing: {', '.join(missing)}")

    needed = [e for e, spec in s["edges"].items() if spec["needs_result"]]
    for a, b in needed:
        if modes[(a, b)] == "async":
            g.miss(f"{a}->{b} is fire-and-forget, but {a} needs its result to answer")
            g.suggest("An event carries no answer back: use it only where the caller can "
                      "respond without the callee's result.")
        else:
            g.award(4 / len(needed), f"{a}->{b} returns the result {a} needs")

    sim = simulate_communication(modes)
    p99, err = sim["p99_ms"], sim["error_rate"]
    if p99 <= s["slo_p99_ms"]:
        g.award(3, f"user-facing p99 {p99:.0f} ms meets the {s['slo_p99_ms']:.0f} ms SLO while "
                   f"{s['slowed_down']} is slow")
    else:
        msg = f"user-facing p99 {p99:.0f} ms misses the {s['slo_p99_ms']:.0f} ms SLO"
        if p99 <= 1.5 * s["slo_p99_ms"]:
            g.partial(1, msg + " (within 1.5x)")
        else:
            g.miss(msg)
        g.suggest("Every call the user waits for adds its callee's tail; which callees does "
                  "the response not depend on?")
    if err <= s["max_error_rate"]:
        g.award(3, f"user-facing error rate {_pct(err)} is within the {_pct(s['max_error_rate'])}"
                   " budget: callee failures are isolated")
    else:
        msg = f"user-facing error rate {_pct(err)} exceeds the {_pct(s['max_error_rate'])} budget"
        if err <= 3 * s["max_error_rate"]:
            g.partial(1, msg + " (within 3x)")
        else:
            g.miss(msg)
        g.suggest("A callee that flaps fails every synchronous request that hits it; a durable "
                  "broker can redeliver instead.")


# --------------------------------------------------------------------------------------------
# day1.challenge (notebook 06)
# --------------------------------------------------------------------------------------------

CHALLENGE_SCENARIO: dict[str, Any] = {
    "entry": "order",
    "arrival_rate_per_s": 100.0,
    # The work each service must do per request it receives (mean, exponential), ms. A design
    # may declare more, never less.
    "services": {
        "order": {"service_time_ms": 8.0},
        "product": {"service_time_ms": 4.0},
        "inventory": {"service_time_ms": 6.0},
        "payment": {"service_time_ms": 40.0},
        "notification": {"service_time_ms": 30.0},
    },
    # Interactions the checkout needs (caller, callee, whether the caller needs the result).
    "interactions": [
        ("order", "product", True),
        ("order", "inventory", True),
        ("order", "payment", False),
        ("payment", "notification", False),
    ],
    "hop_delay_ms": 0.5,  # network, each way
    "slo_p99_ms": 150.0,
    # Each replica is one single-worker instance (M/M/1) at this price.
    "usd_per_replica_h": 0.05,
    "budget_usd_per_h": 0.80,
}
"""The Day 1 design challenge (notebook 06): load, work per service, needed interactions, SLO
and budget."""
_CHALLENGE = copy.deepcopy(CHALLENGE_SCENARIO)


def _parse_design(answer: Any) -> tuple[dict[str, dict[str, float]], list[tuple[str, str, str]]]:
    s = _CHALLENGE
    shape = ('{"services": {name: {"replicas": int, "service_time_ms": float}}, '
             '"edges": [(caller, callee, "sync"|"async"), ...]}')
    answer = _require_mapping(answer, shape)
    _require_keys(answer, ("services", "edges"), shape)
    services, edges = answer["services"], answer["edges"]
    if not isinstance(services, Mapping):
        raise AnswerShapeError(f"'services' must be a dict; expected {shape}")
    unknown = sorted(str(k) for k in services if k not in s["services"])
    if unknown:
        raise AnswerShapeError(f"unknown service(s) {', '.join(unknown)}; the services are "
                               f"{', '.join(s['services'])}")
    missing = [k for k in s["services"] if k not in services]
    if missing:
        raise AnswerShapeError(f"every service needs an entry; missing: {', '.join(missing)}")
    parsed: dict[str, dict[str, float]] = {}
    for name, spec in services.items():
        if not isinstance(spec, Mapping):
            raise AnswerShapeError(f"{name}: expected {{'replicas': int, 'service_time_ms': "
                                   f"float}}, got {spec!r}")
        r = spec.get("replicas")
        if not _is_int(r) or r < 1:
            raise AnswerShapeError(f"{name}: replicas={r!r} is invalid; it must be an integer "
                                   ">= 1")
        st = spec.get("service_time_ms", s["services"][name]["service_time_ms"])
        if not _is_number(st) or st <= 0:
            raise AnswerShapeError(f"{name}: service_time_ms={st!r} is invalid; it must be a "
                                   "number > 0")
        parsed[name] = {"replicas": int(r), "service_time_ms": float(st)}
    if isinstance(edges, (str, bytes)) or not isinstance(edges, (list, tuple)):
        raise AnswerShapeError(f"'edges' must be a list of (caller, callee, mode); expected "
                               f"{shape}")
    parsed_edges = []
    for e in edges:
        if not isinstance(e, (list, tuple)) or len(e) != 3:
            raise AnswerShapeError(f"edge {e!r} is invalid; write (caller, callee, "
                                   "'sync'|'async')")
        a, b, mode = e
        if a not in s["services"] or b not in s["services"] or a == b:
            raise AnswerShapeError(f"edge {e!r} is invalid; caller and callee must be two "
                                   f"different services of {', '.join(s['services'])}")
        if mode not in ("sync", "async"):
            raise AnswerShapeError(f"edge {e!r}: mode {mode!r} is invalid; use 'sync' or "
                                   "'async'")
        parsed_edges.append((a, b, mode))
    graph = nx.DiGraph([(a, b) for a, b, _ in parsed_edges])
    if graph.number_of_nodes() and not nx.is_directed_acyclic_graph(graph):
        raise AnswerShapeError("the edges form a cycle; a checkout call graph must be acyclic")
    return parsed, parsed_edges


def simulate_challenge(answer: Any) -> dict[str, Any]:
    """Predict a design's user-facing p99, utilisation per service and cost.

    Load flows along every edge (each call, sync or async, is one request to the callee);
    utilisation = arrival rate x service time / replicas. If every service is stable, a seeded
    :mod:`sim` call graph (one worker per replica, round robin) gives the user-facing p99: the
    user waits for the entry service and, one after another, for every synchronous call below
    it. Returns ``{"p99_ms", "utilisation", "cost_usd_per_h"}`` (``p99_ms`` is ``inf`` when a
    service is overloaded).
    """
    s = _CHALLENGE
    services, edges = _parse_design(answer)
    graph = nx.DiGraph()
    for name, spec in services.items():
        graph.add_node(name, service_time=sim.Exponential(spec["service_time_ms"] / 1000),
                       replicas=spec["replicas"])
    for a, b, mode in edges:
        graph.add_edge(a, b, mode=mode)
    rate = {name: 0.0 for name in services}
    rate[s["entry"]] = s["arrival_rate_per_s"]
    for node in nx.topological_sort(graph):
        for child in graph.successors(node):
            rate[child] += rate[node]
    utilisation = {
        n: rate[n] * services[n]["service_time_ms"] / 1000.0 / services[n]["replicas"]
        for n in services
    }
    cost = sum(spec["replicas"] for spec in services.values()) * s["usd_per_replica_h"]
    p99 = math.inf
    if max(utilisation.values()) < 1:
        # Only what the entry reaches matters; unreachable services just cost money.
        reachable = nx.descendants(graph, s["entry"]) | {s["entry"]}
        scenario = sim.CallGraph(graph.subgraph(reachable).copy(), entry=s["entry"],
                                 hop_delay_ms=s["hop_delay_ms"],
                                 rate_per_s=s["arrival_rate_per_s"], n_requests=_REQUESTS)
        p99 = float(sim.run(scenario, seed=_SEED).p99_latency_ms.value)
    return {"p99_ms": p99, "utilisation": utilisation, "cost_usd_per_h": cost}


@exercise("day1.challenge", max_score=10)
def check_challenge(answer: Any, g: Grader) -> None:
    """A checkout design for :data:`CHALLENGE_SCENARIO`: SLO, cost and coupling.

    Answer shape::

        {"services": {name: {"replicas": int, "service_time_ms": float}, ...},  # every service
         "edges": [(caller, callee, "sync" | "async"), ...]}

    ``service_time_ms`` may be omitted (the scenario's work is used) and is never taken below
    it. Scored on: every service stable and user-facing p99 within the SLO (4 points), cost
    within budget (3 points; 1 within 25% over), coupling (3 points: every needed interaction
    present, synchronous exactly where the result is needed; 1 point lost per extra
    synchronous edge or missing/misdirected interaction).
    """
    s = _CHALLENGE
    services, edges = _parse_design(answer)
    design = {"services": {}, "edges": edges}
    for name, spec in services.items():
        floor = s["services"][name]["service_time_ms"]
        if spec["service_time_ms"] < floor:
            g.miss(f"{name}: service_time_ms {spec['service_time_ms']:g} is less than the work "
                   f"it must do ({floor:g} ms); {floor:g} ms is used")
        design["services"][name] = {"replicas": spec["replicas"],
                                    "service_time_ms": max(spec["service_time_ms"], floor)}
    result = simulate_challenge(design)

    overloaded = sorted(n for n, u in result["utilisation"].items() if u >= 1)
    if overloaded:
        g.miss(f"overloaded (utilisation >= 100%): {', '.join(overloaded)}")
        g.suggest("Compute each service's arrival rate from the edges first: async events are "
                  "load too.")
    elif result["p99_ms"] <= s["slo_p99_ms"]:
        g.award(4, f"user-facing p99 {result['p99_ms']:.0f} ms meets the "
                   f"{s['slo_p99_ms']:.0f} ms SLO")
    else:
        g.miss(f"user-facing p99 {result['p99_ms']:.0f} ms misses the {s['slo_p99_ms']:.0f} ms "
               "SLO")
        g.suggest("The user waits for the whole synchronous chain: shorten it, or give its "
                  "services headroom (utilisation well below one).")

    cost, budget = result["cost_usd_per_h"], s["budget_usd_per_h"]
    if cost <= budget + 1e-9:
        g.award(3, f"cost ${cost:.2f}/h is within the ${budget:.2f}/h budget")
    elif cost <= 1.25 * budget:
        g.partial(1, f"cost ${cost:.2f}/h is over the ${budget:.2f}/h budget (within 25%)")
        g.suggest("Spend replicas where utilisation is high; a service off the synchronous "
                  "path only needs to keep up, not to be fast.")
    else:
        g.miss(f"cost ${cost:.2f}/h is far over the ${budget:.2f}/h budget")
        g.suggest("Spend replicas where utilisation is high; a service off the synchronous "
                  "path only needs to keep up, not to be fast.")

    modes = {(a, b): m for a, b, m in edges}
    needed = {(a, b): need for a, b, need in s["interactions"]}
    problems = []
    for (a, b), need in needed.items():
        if (a, b) not in modes:
            problems.append(f"{a} never calls {b}, which the checkout needs")
        elif need and modes[(a, b)] != "sync":
            problems.append(f"{a}->{b} is async but {a} needs its result")
        elif not need and modes[(a, b)] == "sync":
            problems.append(f"{a}->{b} is sync though {a} does not need its result: "
                            "temporal coupling")
    for (a, b), mode in modes.items():
        if (a, b) not in needed and mode == "sync":
            problems.append(f"{a}->{b} is an extra synchronous dependency")
    coupling = max(0, 3 - len(problems))
    if not problems:
        g.award(3, "coupling: synchronous only where a result is needed, every interaction "
                   "present")
    else:
        for p in problems:
            g.miss(p)
        if coupling:
            g.partial(coupling, f"coupling: {coupling} of 3 points")
        g.suggest("Call synchronously only when the caller cannot answer without the result; "
                  "everything else can be an event.")
