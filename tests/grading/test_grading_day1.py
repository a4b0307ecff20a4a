"""Day 1 checks: full marks for a correct answer, less (with a hint that does not give the answer
away) for a wrong one, zero with a clear message for a wrong-shaped one."""

from __future__ import annotations

import copy
import math
import re

import networkx as nx
import pytest
from ci_env import skip_or_fail

import sim
from grading import check, day1, testing
from grading._instructor import day1 as ref
from grading.day1 import DECOMPOSITION_ITEMS, INSTANCE_TYPES
from grading_fixtures import REPO, LAB1_CHEAPEST_PLAN, LAB1_NODES, lab1_nodes_choice, lab1_plan

EXERCISES = ["day1.challenge", "day1.communication", "day1.decomposition", "day1.lab1_cost",
             "day1.lab1_nodes", "day1.patterns", "day1.tradeoffs"]


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_correct_answer_gets_full_marks(exercise_id, answers):
    fb = check(exercise_id, answers[exercise_id])
    assert fb.score == fb.max_score == 10, str(fb)
    assert fb.wrong == [] and fb.hint is None


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_same_answer_same_feedback(exercise_id, answers):
    assert str(check(exercise_id, answers[exercise_id])) == str(
        check(exercise_id, answers[exercise_id]))


@pytest.mark.parametrize("exercise_id", EXERCISES)
@pytest.mark.parametrize("answer", [None, 42, "saga", [1, 2], {"unexpected": True}])
def test_wrong_shape_gets_zero_and_a_message(exercise_id, answer):
    fb = check(exercise_id, answer)
    assert fb.score == 0 and fb.right == []
    assert len(fb.wrong) == 1 and len(fb.wrong[0]) > 20, fb.wrong


def _assert_partial(fb, below=10):
    assert 0 <= fb.score < below, str(fb)
    assert fb.wrong, str(fb)
    assert fb.hint, str(fb)


# ---- day1.tradeoffs ---------------------------------------------------------------------------

def test_tradeoffs_reference_agrees_with_the_simulator(answers):
    """A learner who predicts with sim's call graph gets the p99 points, hidden points too."""
    s = day1.TRADEOFFS_SCENARIO

    def simulated_p99_ms(hops, rate_per_s):
        graph = sim.chain_graph(hops, s["service_time_ms_per_hop"] / 1000,
                                hop_delay_ms=s["hop_delay_ms"])
        result = sim.run(sim.CallGraph(graph, rate_per_s=rate_per_s, n_requests=40_000), seed=3)
        # the chain's first service is called without a hop: add its delay both ways
        return result.p99_latency_ms.value + 2 * s["hop_delay_ms"]

    assert simulated_p99_ms(s["checkout_hops"], s["arrival_rate_per_s"]) == pytest.approx(
        ref.tradeoffs_p99(s, s["checkout_hops"]), rel=0.05)
    answer = dict(answers["day1.tradeoffs"], p99_ms=simulated_p99_ms)
    assert check("day1.tradeoffs", answer).score == 10


def _mean_sum_ms(hops, rate):
    s = day1.TRADEOFFS_SCENARIO
    return hops * (1000 / (1000 / s["service_time_ms_per_hop"] - rate) + 2 * s["hop_delay_ms"])


@pytest.mark.parametrize("change, expected", [
    # the architecture's 3 points need a right p99 function and hop budget behind them
    ({"p99_ms": "mean"}, 3),  # an average, not a tail: off by far more than 5%
    ({"p99_ms": "no delay"}, 3),  # the network is 13 % of the p99
    ({"p99_ms": "one way"}, 3),
    ({"p99_ms": "own point only"}, 4.5),  # right at the design's point, a constant elsewhere
    ({"max_hops_within_slo": +1}, 5),
    ({"max_hops_within_slo": +3}, 4),
    ({"architecture": "flip"}, 7),
])
def test_tradeoffs_wrong_answers_lose_points(change, expected, answers):
    answer = dict(answers["day1.tradeoffs"])
    right = answer["p99_ms"]
    s = day1.TRADEOFFS_SCENARIO
    d = s["hop_delay_ms"]
    functions = {"mean": _mean_sum_ms,
                 "no delay": lambda h, r: right(h, r) - 2 * h * d,
                 "one way": lambda h, r: right(h, r) - h * d,
                 "own point only": lambda h, r: right(s["checkout_hops"],
                                                      s["arrival_rate_per_s"])}
    if "p99_ms" in change:
        answer["p99_ms"] = functions[change["p99_ms"]]
    if "max_hops_within_slo" in change:
        answer["max_hops_within_slo"] += change["max_hops_within_slo"]
    if change.get("architecture") == "flip":
        answer["architecture"] = {"monolith": "microservices",
                                  "microservices": "monolith"}[answer["architecture"]]
    fb = check("day1.tradeoffs", answer)
    assert fb.score == expected, str(fb)
    _assert_partial(fb)
    want = ref.tradeoffs_reference(s)
    assert not re.search(r"\d", fb.hint.replace("p99", ""))  # no figure of the answer
    assert want["architecture"] not in fb.hint
    if change.get("p99_ms") not in (None, "own point only"):  # the learner's own may be
        assert f"{want['p99_ms_at_load']:.1f}" not in str(fb)  # never the reference's


def test_tradeoffs_network_share_is_at_least_a_tenth_of_the_p99_in_every_variant():
    for v in range(12):
        s = day1.scenario("day1.tradeoffs", v)
        k = s["checkout_hops"]
        assert 2 * k * s["hop_delay_ms"] >= 0.10 * ref.tradeoffs_p99(s, k), (v, s)


@pytest.mark.parametrize("field, value", [
    ("architecture", "serverless"), ("p99_ms", 153.9), ("p99_ms", lambda h, r: -3),
    ("p99_ms", lambda h, r: float("nan")), ("max_hops_within_slo", 2.5),
    ("max_hops_within_slo", True)])
def test_tradeoffs_invalid_fields_are_named(field, value, answers):
    fb = check("day1.tradeoffs", dict(answers["day1.tradeoffs"], **{field: value}))
    assert fb.score == 0 and field.split("_")[0] in fb.wrong[0], str(fb)


# ---- day1.decomposition -----------------------------------------------------------------------

def test_decomposition_graph_follows_the_domain_model():
    graph = day1.decomposition_graph()
    assert set(graph.nodes) == set(DECOMPOSITION_ITEMS) == (
        set(day1.DOMAIN_MODEL["entities"]) | set(day1.DOMAIN_MODEL["extension"]["entities"]))
    assert set(day1.NEW_ENTITIES) == set(day1.DOMAIN_MODEL["extension"]["entities"])
    assert not set(day1.NEW_ENTITIES) & set(day1.DOMAIN_MODEL["entities"])
    # checkout and cancel_order both write StockItem and Reservation: 3 + 3.
    assert graph["StockItem"]["Reservation"]["weight"] == 6
    # Only read together by client_log_in (0.5) and written/read by register_client (1).
    assert graph["OAuthClient"]["SigningKey"]["weight"] == 1.5
    # The new operations count too: record_scan writes both (3), track_shipment reads both (0.5).
    assert graph["Shipment"]["TrackingEvent"]["weight"] == 3.5
    assert graph["Coupon"]["CouponRedemption"]["weight"] == 3.5


@pytest.mark.parametrize("v", range(6))
def test_reference_new_contexts_follow_write_write_edges(v):
    """In every variant, each new entity shares its reference context with exactly the entities
    it is written together with; the review, written alone, may stand apart or join the
    catalogue."""
    s = day1.scenario("day1.decomposition", v)
    graph = day1.decomposition_graph(s)
    ops = {**s["operations"], **s["extension"]["operations"]}
    references = ref.decomposition_references(s)
    assert references
    for reference in references:
        assert sorted(e for p in reference for e in p) == s["items"]
        home = {e: part for part in reference for e in part}
        for entity in s["new_entities"]:
            written_with = {e for t in ops.values() if t.get(entity) == "w"
                            for e, m in t.items() if m == "w"}
            assert written_with <= home[entity], (entity, written_with)
            assert graph.has_node(entity)
    if "Review" in s["new_entities"]:
        placements = {frozenset(next(p for p in reference if "Review" in p))
                      for reference in references}
        assert placements == {frozenset({"Review"}),
                              frozenset({"Review", "Product", "Category"})}


def test_decomposition_variants_draw_their_requirements_from_the_pool():
    pool = day1.DOMAIN_MODEL["requirement_pool"]
    published = day1.scenario("day1.decomposition", 0)
    assert published["extension"] == day1.DOMAIN_MODEL["extension"]
    assert tuple(published["new_entities"]) == day1.NEW_ENTITIES
    assert tuple(published["items"]) == DECOMPOSITION_ITEMS
    # the pool's three published requirements are the published extension, word for word
    for name in published["extension"]["requirements"]:
        assert pool[name]["text"] == published["extension"]["requirements"][name]
        assert set(pool[name]["entities"]) <= set(published["new_entities"])
    drawn = {tuple(sorted(day1.scenario("day1.decomposition", v)["extension"]["requirements"]))
             for v in range(1, 13)}
    assert len(drawn) >= 4 and all(len(d) == 3 and set(d) <= set(pool) for d in drawn)


@pytest.mark.parametrize("v", [0, 1, 2, 3])
def test_decomposition_accepts_every_defensible_answer_as_a_mapping(v):
    with testing.as_variant("day1.decomposition", v):
        for reference in ref.decomposition_references(day1.scenario("day1.decomposition")):
            mapping = {e: f"ctx{i}" for i, part in enumerate(reference) for e in part}
            fb = check("day1.decomposition", mapping)
            assert fb.score == 10, str(fb)


def test_decomposition_answer_copied_from_another_variant_fails():
    published = [set(p) for p in ref.decomposition_references(
        day1.scenario("day1.decomposition", 0))[0]]
    for v in range(1, 8):
        if day1.scenario("day1.decomposition", v)["new_entities"] == list(day1.NEW_ENTITIES):
            continue
        with testing.as_variant("day1.decomposition", v):
            assert check("day1.decomposition", published).score == 0


def _cloudmart_map():
    """The seven services' contexts, as the context map notebook 02 prints lists them."""
    import yaml
    from grading_fixtures import REPO

    path = REPO / "notebooks" / "day1-microservices" / "context-map.yaml"
    if not path.exists():
        skip_or_fail("notebook 02's context map is not there")
    return [set(c["owns"]) for c in yaml.safe_load(path.read_text())["contexts"].values()]


def test_copying_cloudmarts_map_is_not_the_answer():
    """The map the notebook shows earns nothing: the other criteria count only as much as the
    new entities are placed; the hint names the unplaced new entities (which the learner
    knows) but never where they go."""
    fb = check("day1.decomposition", _cloudmart_map())
    assert fb.score == 0, str(fb)
    _assert_partial(fb)
    assert any("not placed" in w for w in fb.wrong), fb.wrong
    assert all(e in fb.hint for e in day1.NEW_ENTITIES), fb.hint
    for existing in day1.DOMAIN_MODEL["entities"]:
        assert not re.search(rf"\b{existing}\b", fb.hint), fb.hint  # no context named
    # placing the new entities as the reference does is what completes it
    full = _cloudmart_map() + [{"Shipment", "TrackingEvent"}, {"Coupon", "CouponRedemption"},
                               {"Review"}]
    assert check("day1.decomposition", full).score == 10


def test_new_entities_in_the_wrong_place_lose_points():
    """Shipping and promotions folded into ordering: CloudMart intact, the new placement not."""
    contexts = _cloudmart_map()
    order = next(c for c in contexts if "Order" in c)
    order |= {"Shipment", "TrackingEvent", "Coupon", "CouponRedemption"}
    contexts.append({"Review"})
    fb = check("day1.decomposition", contexts)
    assert 2 <= fb.score < 5, str(fb)  # 25% of the new pairs right weighs everything else
    _assert_partial(fb)
    assert not any(re.search(rf"\b{e}\b", fb.hint) for e in DECOMPOSITION_ITEMS), fb.hint
    # a split invariant among the new entities is named: one pair, nothing more
    apart = check("day1.decomposition", _cloudmart_map() + [{e} for e in day1.NEW_ENTITIES])
    _assert_partial(apart)
    assert apart.score < fb.score
    named = {e for e in DECOMPOSITION_ITEMS if re.search(rf"\b{e}\b", apart.hint)}
    assert len(named) == 2 and named <= set(day1.NEW_ENTITIES), apart.hint


def test_decomposition_partial_credit_is_graded():
    """Community detection on the graph alone folds shipping into ordering: good, not full."""
    graph = day1.decomposition_graph()
    communities = nx.community.louvain_communities(graph, weight="weight", seed=1)
    fb = check("day1.decomposition", [set(c) for c in communities])
    assert 2 <= fb.score < 10, str(fb)
    one_context = check("day1.decomposition", [set(DECOMPOSITION_ITEMS)])
    one_each = check("day1.decomposition", [{e} for e in DECOMPOSITION_ITEMS])
    assert one_context.score < fb.score and one_each.score < fb.score
    for bad in (fb, one_context, one_each):
        _assert_partial(bad)
        named = [e for e in DECOMPOSITION_ITEMS if re.search(rf"\b{e}\b", bad.hint)]
        assert len(named) <= 2, bad.hint  # a nudge about one pair at most, never the contexts


@pytest.mark.parametrize("answer, words", [
    ({e: "x" for e in DECOMPOSITION_ITEMS[1:]}, "missing"),
    ([{"Order", "Ordr"}], "unknown"),
    ([{"Order"}, {"Order"}], "more than one"),
    (["Order"], "set of entities"),
    ([{"Shipment", "TrackingEvent"}, {"Review"}, {"Coupon", "CouponRedemption"}], "missing"),
])
def test_decomposition_shape_errors(answer, words):
    fb = check("day1.decomposition", answer)
    assert fb.score == 0 and fb.right == [] and words in fb.wrong[0], str(fb)


# ---- day1.patterns ----------------------------------------------------------------------------

def test_compensation_rate_matches_a_monte_carlo_saga():
    s = day1.SAGA_FAILURE_PROFILE
    p_fail, q, a = (s["failure_probability"], s["compensation_failure_probability"],
                    s["compensation_attempts"])
    rng = __import__("numpy").random.default_rng(11)
    n = 200_000
    fails = rng.random((n, len(p_fail))) < p_fail
    first_failure = fails.argmax(axis=1)
    any_failure = fails.any(axis=1)
    # each undo fails only if all its tries fail; at most len(p) - 1 undos per saga
    undo_fails = (rng.random((n, len(p_fail) - 1, a)) < q).all(axis=2)
    undos_ok = __import__("numpy").array([not undo_fails[i, :k].any()
                                          for i, k in enumerate(first_failure)])
    compensated = any_failure & (first_failure > 0) & undos_ok
    assert compensated.mean() == pytest.approx(ref.compensation_rate(p_fail, q, a), abs=0.003)


def test_patterns_partial_credit(answers):
    answer = copy.deepcopy(answers["day1.patterns"])
    answer["patterns"]["problem_b"] = "saga"   # the lost event after the commit
    del answer["patterns"]["problem_g"]         # the shared tables
    fb = check("day1.patterns", answer)
    # protection 5/7 (two problems open) x economy 5/6 (one of six applied patterns unneeded):
    # the patterns' 5 points and the rate's 5 both count that share
    share = 5 / 7 * 5 / 6
    assert fb.score == pytest.approx(round(10 * share, 1))
    _assert_partial(fb)
    assert any("as much as the patterns earn" in w for w in fb.wrong), fb.wrong
    s = day1.SAGA_FAILURE_PROFILE
    p_fail, q, a = (s["failure_probability"], s["compensation_failure_probability"],
                    s["compensation_attempts"])
    # an undo that is never retried, or never fails, earns nothing of the rate's 5
    one_try = ref.compensation_rate(p_fail, q, 1)
    fb1 = check("day1.patterns", dict(answers["day1.patterns"], compensation_rate=one_try))
    assert fb1.score == 5 and "one try" in " ".join(fb1.wrong), str(fb1)
    never_fails = ref.compensation_rate(p_fail, 0.0, 1)
    fb2 = check("day1.patterns", dict(answers["day1.patterns"], compensation_rate=never_fails))
    assert fb2.score == 5 and "stuck" in " ".join(fb2.wrong), str(fb2)
    fb3 = check("day1.patterns", dict(answers["day1.patterns"], compensation_rate=0.3))
    assert fb3.score == 5
    # the right number, not a function: half the rate's points
    right = ref.compensation_rate(p_fail, q, a)
    assert check("day1.patterns", dict(answers["day1.patterns"],
                                       compensation_rate=right)).score == 7.5
    assert not any(re.search(rf"\b{p}\b", fb.hint) for p in ("outbox", "database_per_service"))
    for fb_ in (fb1, fb2, fb3):
        assert not re.search(r"\d", fb_.hint), fb_.hint  # no figure of the rate


def test_the_librarys_saga_value_earns_no_rate_points(answers):
    """The notebook shows sim.saga_outcomes; the rate function runs without sim in its
    globals, and the library has no retried undos anyway."""
    import sim as sim_module

    matching = answers["day1.patterns"]["patterns"]
    for fn in (lambda p, q, a: sim.saga_outcomes(p).loc["compensated", "analytic"],
               lambda p, q, a: sim.saga_outcomes(p, q).loc["compensated", "analytic"],
               lambda p, q, a: sim.saga_outcomes(p, q ** a).loc["compensated", "analytic"]):
        fb = check("day1.patterns", {"patterns": matching, "compensation_rate": fn})
        assert fb.score == 5, str(fb)
    # the third is right, by reasoning (q ** a: an undo fails when all its tries do); reached
    # through a closure rather than the globals it runs: the check is tamper-evident, no more
    fb = check("day1.patterns", {"patterns": matching, "compensation_rate": lambda p, q, a:
                                 sim_module.saga_outcomes(p, q ** a).loc["compensated",
                                                                         "analytic"]})
    assert fb.score == 10, str(fb)
    # a callable that is not a def or lambda cannot smuggle it in
    import functools
    wrapped = functools.partial(lambda p, q, a, k: k, k=0.07)
    assert check("day1.patterns", {"patterns": matching, "compensation_rate": wrapped}).score == 0


def test_patterns_right_rate_under_a_guessed_matching_earns_little(answers):
    """The two criteria are earned together: a perfect rate function with no problem matched
    scores nothing, with one matched (and six anti-patterns) almost nothing."""
    rate = answers["day1.patterns"]["compensation_rate"]
    none = {p: "two_phase_commit" for p in day1.PATTERN_PROBLEMS}
    assert check("day1.patterns", {"patterns": none, "compensation_rate": rate}).score == 0
    one = dict(none, problem_a="saga")
    # protection 1/7 x economy 1/7 (six anti-patterns applied), on the 5 + 5 points
    assert check("day1.patterns", {"patterns": one, "compensation_rate": rate}).score == \
        pytest.approx(round(10 / 49, 1))


def test_patterns_protection_and_economy_oppose(answers):
    """Hedging (several patterns per problem) protects every problem and loses economy; leaving
    problems open keeps economy and loses protection: neither extreme scores well."""
    right = answers["day1.patterns"]
    rate = right["compensation_rate"]
    key = ref.pattern_key(0)
    hedge_two = {p: [pat, "cqrs" if pat != "cqrs" else "saga"] for p, pat in key.items()}
    fb = check("day1.patterns", {"patterns": hedge_two, "compensation_rate": rate})
    assert fb.score == pytest.approx(5.0)  # protection 1 x economy 1/2, on 5 + 5 points
    assert any("applied without need" in w for w in fb.wrong) and "costs" in fb.hint
    everything = {p: list(day1.PATTERNS) for p in key}
    fb = check("day1.patterns", {"patterns": everything, "compensation_rate": rate})
    assert fb.score <= 1.2, str(fb)  # protection 1 x economy 1/9
    assert any("is what microservices replace" in w for w in fb.wrong)
    few = {p: key[p] for p in list(key)[:2]}  # only what one is sure of
    fb = check("day1.patterns", {"patterns": few, "compensation_rate": rate})
    assert fb.score == pytest.approx(round(10 * 2 / 7, 1))  # economy 1 x protection 2/7
    # the criteria as a function, on its own
    p, e = day1.patterns_protection_and_complexity({"problem_a": frozenset({"saga", "outbox"})},
                                                   {"problem_a": "saga", "problem_b": "cqrs"})
    assert (p, e) == (0.5, 0.5)
    with pytest.raises(ValueError, match="at least one problem"):
        day1.patterns_protection_and_complexity({}, {})


def test_patterns_trivial_answers_score_at_most_30_percent():
    """Empty, uniform, extreme (every pattern everywhere) and copied answers, in the published
    variant and in learners' variants."""
    from grading import testing
    scores = testing.assert_trivial_answers_score_low(0.30, ["day1.patterns"], range(8))
    labels = {s.label.split(":", 1)[0] for s in scores}
    assert labels == {"empty", "uniform", "extreme", "copied"}
    assert any("every pattern for every problem" in s.label for s in scores)


def test_problem_texts_do_not_name_their_pattern():
    """No description gives its answer away by naming the pattern (or its key word)."""
    words = {"saga": "saga", "outbox": "outbox", "idempotency_key": "idempot",
             "event_sourcing": "event sourc", "cqrs": "read model", "api_composition": "compos",
             "database_per_service": "per service"}
    # nor borrows the wording of notebook 03's theory table, so matching is not a keyword lookup
    table_words = ["schema", "two-phase", "atomic", "publish", "retr", "redeliver", "twice",
                   "record of truth", "replay", "read side", "different models",
                   "several services", "business transaction", "query that needs"]
    for pattern, texts in ref.PROBLEM_POOL.items():
        for text in texts:
            for word in [*words.values(), *table_words]:
                assert word not in text.lower(), (pattern, word, text)


def test_patterns_variants_draw_other_problems_under_neutral_ids():
    keys = [ref.problems(v)[1] for v in range(1, 30)]
    assert all(len(k) == 6 and len(set(k.values())) == 6 for k in keys)
    assert all(set(k) == {f"problem_{c}" for c in "abcdef"} for k in keys)
    # the same id means different patterns in different variants
    assert len({k["problem_a"] for k in keys}) >= 5
    texts = {t for v in range(1, 30) for t in ref.problems(v)[0].values()}
    assert len(texts) > len(ref.PROBLEM_POOL)  # both descriptions of a pattern are used
    assert set(day1.PATTERNS) > set(ref.PROBLEM_POOL)  # distractors: not a one-to-one quiz


@pytest.mark.parametrize("answer, words", [
    ({"patterns": {"nope": "saga"}, "compensation_rate": 0.1}, "unknown problem"),
    ({"patterns": {"problem_b": "2pc"}, "compensation_rate": 0.1}, "unknown pattern"),
    ({"patterns": {}, "compensation_rate": 1.5}, "compensation_rate"),
    ({"patterns": ["saga"], "compensation_rate": 0.1}, "'patterns' must be a dict"),
    ({"patterns": {"problem_a": []}, "compensation_rate": 0.1}, "non-empty list"),
    ({"patterns": {"problem_a": ["saga", "2pc"]}, "compensation_rate": 0.1}, "unknown pattern"),
    ({"patterns": {}}, "compensation_rate"),
])
def test_patterns_shape_errors(answer, words):
    fb = check("day1.patterns", answer)
    assert fb.score == 0 and words in fb.wrong[0]


# ---- day1.lab1_nodes --------------------------------------------------------------------------

def test_cheapest_node_plan_is_the_hand_computed_one_and_an_independent_search_agrees():
    s = day1.scenario("day1.lab1_nodes", 0)
    assert ref.cheapest_node_plan(s) == (LAB1_NODES, pytest.approx(1.36))
    for v in range(0, 6):
        s = day1.scenario("day1.lab1_nodes", v)
        best, cost = ref.cheapest_node_plan(s)
        mine = lab1_nodes_choice(s)
        assert cost == pytest.approx(
            mine["nodes"] * sim.PRICE_SHEET[mine["node_type"]].on_demand_usd_per_h), v


def test_losing_a_node_is_what_decides_not_a_spare_node_count():
    """bin_pack's count plus one spare holds the pods, but spread over the nodes no node keeps
    room for a lost 2-core pod; the check repacks after each loss and says so."""
    pods = day1.lab1_pods(day1.scenario("day1.lab1_nodes", 0))
    assert len(sim.bin_pack(pods, "compute.xlarge")) == 5
    assert ref.spread(pods, "compute.xlarge", 6) is not None
    assert ref.unschedulable_after_loss(pods, "compute.xlarge", 6) is not None
    assert ref.unschedulable_after_loss(pods, "compute.xlarge", 8) is None
    for v in range(1, 6):  # the variants are drawn so that the rule of thumb is never the answer
        s = day1.scenario("day1.lab1_nodes", v)
        best, _ = ref.cheapest_node_plan(s)
        assert best["nodes"] != len(sim.bin_pack(day1.lab1_pods(s), best["node_type"])) + 1


def test_lab1_nodes_resilience_against_cost(answers):
    best = dict(LAB1_NODES)  # a plain choice: the learner's own scenario only, 6 of 10
    fb = check("day1.lab1_nodes", best)
    assert fb.score == 6 and any("function" in w for w in fb.wrong), str(fb)
    assert check("day1.lab1_nodes", answers["day1.lab1_nodes"]).score == 10
    for fragile in (best["nodes"] - 1, 6):  # cheap, fragile; 6 = bin_pack's count + 1
        fb = check("day1.lab1_nodes", dict(best, nodes=fragile))
        assert fb.score == pytest.approx(0.6 * 2), str(fb)
        assert "only while every node is up" in fb.wrong[0]
    fb = check("day1.lab1_nodes", dict(best, nodes=4))
    assert fb.score == 0 and "cannot hold" in fb.wrong[0]
    fb = check("day1.lab1_nodes", dict(best, nodes=best["nodes"] + 4))      # safe, wasteful
    assert fb.score == pytest.approx(round(0.6 * round(3 * 8 / 12, 2), 1)) and "idle" in fb.wrong[0]
    fb = check("day1.lab1_nodes", {"node_type": "general.2xlarge", "nodes": 4})  # resilient, dearer
    assert fb.score == pytest.approx(round(0.6 * round(3 * 1.36 / 1.536, 2), 1)), str(fb)
    assert "2xlarge" not in fb.hint and "compute" not in fb.hint  # the hint names no answer


def test_lab1_nodes_function_is_scored_on_hidden_pod_sets():
    def published_choice(_s):
        return dict(LAB1_NODES)

    fb = check("day1.lab1_nodes", published_choice)
    assert 6 <= fb.score < 10 and any("hidden" in w for w in fb.wrong), str(fb)

    def bin_pack_plus_one(s):
        return {"node_type": "compute.xlarge",
                "nodes": len(sim.bin_pack(day1.lab1_pods(s), "compute.xlarge")) + 1}
    assert check("day1.lab1_nodes", bin_pack_plus_one).score <= 3
    fb = check("day1.lab1_nodes", lambda s: 1 / 0)
    assert fb.score == 0 and "function" in fb.wrong[0]


@pytest.mark.parametrize("answer, words", [
    ({"node_type": "huge", "nodes": 3}, "not offered"),
    ({"node_type": "compute.xlarge", "nodes": 0}, "integer from 1"),
    ({"node_type": "compute.xlarge", "nodes": 2.5}, "integer from 1"),
    ({"nodes": 3}, "node_type"),
])
def test_lab1_nodes_shape_errors(answer, words):
    fb = check("day1.lab1_nodes", answer)
    assert fb.score == 0 and words in fb.wrong[0], str(fb)


# ---- day1.lab1_cost ---------------------------------------------------------------------------

def test_cheapest_plan_is_minimal_and_meets_the_slo():
    s = day1.scenario("day1.lab1_cost", 0)
    plan, cost = ref.cheapest_capacity_plan(s)
    slo = s["slo_p99_ms"]
    assert plan == LAB1_CHEAPEST_PLAN == lab1_plan(s)
    assert cost == pytest.approx(sum(e["replicas"] * INSTANCE_TYPES[e["instance"]]["usd_per_h"]
                                     for e in plan.values()))
    for service, e in plan.items():
        assert ref.replica_p99_ms(service, e["replicas"], e["instance"], s) <= slo
        if e["replicas"] > s["min_replicas"]:
            assert ref.replica_p99_ms(service, e["replicas"] - 1, e["instance"], s) > slo
    for v in range(1, 4):  # the independent search agrees in other variants and hidden ones
        sv = day1.scenario("day1.lab1_cost", v)
        assert lab1_plan(sv) == ref.cheapest_capacity_plan(sv)[0]
    for hs in day1._lab1_hidden("day1.lab1_cost"):
        assert lab1_plan(hs) == ref.cheapest_capacity_plan(hs)[0]


def test_lab1_cost_partial_credit(answers):
    plan = copy.deepcopy(LAB1_CHEAPEST_PLAN)  # a plain plan: own scenario only, 6 of 10
    fb = check("day1.lab1_cost", plan)
    assert fb.score == 6 and any("function" in w for w in fb.wrong), str(fb)
    generous = {s: {"replicas": e["replicas"] + 2, "instance": e["instance"]}
                for s, e in plan.items()}
    fb = check("day1.lab1_cost", generous)
    assert fb.score == 0 and "over-provisioned" in " ".join(fb.wrong)  # SLO met, cost 1.6x
    one_more = dict(plan, product={"replicas": 6, "instance": "small"})  # +$0.025 of $0.455
    assert check("day1.lab1_cost", one_more).score == 6  # within the 10% tolerance
    two_more = dict(plan, order={"replicas": 3, "instance": "fast"})  # +15%
    assert check("day1.lab1_cost", two_more).score == pytest.approx(0.6 * 3)
    starved = dict(plan, product={"replicas": 1, "instance": "small"})
    fb2 = check("day1.lab1_cost", starved)
    assert fb2.score == pytest.approx(0.9) and "overloaded" in " ".join(fb2.wrong)
    lonely = dict(plan, inventory={"replicas": 1, "instance": "large"})
    fb3 = check("day1.lab1_cost", lonely)
    assert fb3.score == pytest.approx(0.9) and "losing a replica" in " ".join(fb3.wrong)
    for bad in (fb, fb2, fb3):
        _assert_partial(bad)
        assert not any(name in bad.hint for name in INSTANCE_TYPES), bad.hint


def test_lab1_cost_function_is_scored_on_hidden_scenarios(answers):
    assert check("day1.lab1_cost", answers["day1.lab1_cost"]).score == 10
    fb = check("day1.lab1_cost", lambda s: copy.deepcopy(LAB1_CHEAPEST_PLAN))
    assert 6 <= fb.score < 10 and any("hidden" in w for w in fb.wrong), str(fb)
    hidden_costs = [ref.cheapest_capacity_plan(hs)[1]
                    for hs in day1._lab1_hidden("day1.lab1_cost")]
    assert not any(f"{c:.3f}" in str(fb) for c in hidden_costs)  # no hidden reference shown


@pytest.mark.parametrize("answer, words", [
    ({"product": {"replicas": 2, "instance": "small"}}, "lacks"),
    ({"cart": {"replicas": 2, "instance": "small"}}, "unknown service"),
])
def test_lab1_cost_shape_errors(answer, words):
    fb = check("day1.lab1_cost", answer)
    assert fb.score == 0 and words in fb.wrong[0]
    bad = dict(LAB1_CHEAPEST_PLAN, order={"replicas": 0, "instance": "fast"})
    assert "replicas=0" in check("day1.lab1_cost", bad).wrong[0]
    bad = dict(LAB1_CHEAPEST_PLAN, order={"replicas": 2, "instance": "xlarge"})
    assert "xlarge" in check("day1.lab1_cost", bad).wrong[0]


# ---- day1.communication -----------------------------------------------------------------------

def test_communication_simulation_matches_probability_and_exponential_tail():
    edges = day1.COMMUNICATION_SCENARIO["edges"]
    all_sync = day1.simulate_communication({e: "sync" for e in edges})
    expected_errors = 1 - math.prod(1 - spec["error_rate"] for spec in edges.values())
    assert all_sync["error_rate"] == pytest.approx(expected_errors, abs=0.01)
    all_async = day1.simulate_communication({e: "async" for e in edges})
    assert all_async["error_rate"] == 0
    # only the entry's own (exponential) latency remains: p99 = mean x ln(100)
    mean_ms = day1.COMMUNICATION_SCENARIO["entry_service_time_ms"]
    assert all_async["p99_ms"] == pytest.approx(mean_ms * math.log(100), rel=0.1)


def test_communication_keys_may_be_strings(answers):
    as_strings = {f"{a}->{b}": m for (a, b), m in answers["day1.communication"].items()}
    assert check("day1.communication", as_strings).score == 10


@pytest.mark.parametrize("mode, expected", [("sync", 1.5), ("async", 0), ("request_reply", 1.5),
                                            ("sync_retry", 0)])
def test_communication_uniform_choices_lose_points(mode, expected):
    edges = day1.COMMUNICATION_SCENARIO["edges"]
    fb = check("day1.communication", {e: mode for e in edges})
    assert fb.score == expected, str(fb)
    _assert_partial(fb)
    assert not re.search(r"\b(sync|async|request_reply)\b", fb.hint), fb.hint


def test_communication_flapping_callee_called_synchronously(answers):
    answer = dict(answers["day1.communication"])
    answer[("order", "inventory")] = "sync"
    fb = check("day1.communication", answer)
    # 2 of 7, and the decoupling's 3 count 1 while the incident is not contained
    assert fb.score == 3 and "error rate" in " ".join(fb.wrong)
    assert any("not contained" in w for w in fb.wrong), fb.wrong
    # core NATS request-reply redelivers nothing: no better than a plain call
    answer[("order", "inventory")] = "request_reply"
    assert check("day1.communication", answer).score == 3


def test_communication_retrying_a_charge_is_wrong(answers):
    """A needed call that is not idempotent must not be retried: the column rule fails."""
    answer = dict(answers["day1.communication"])
    answer[("order", "payment")] = "sync_retry"
    fb = check("day1.communication", answer)
    assert fb.score == 0 and "not safe to repeat" in fb.wrong[0], str(fb)
    assert "retry" not in fb.hint.lower().replace("retrying", "")  # no mode named


@pytest.mark.parametrize("v", range(1, 9))
def test_every_communication_variant_has_a_needed_call_that_must_not_be_retried(v):
    s = day1.scenario("day1.communication", v)
    answer = ref.communication_reference(s)
    assert any(spec["needs_result"] and answer[e] == "sync" for e, spec in s["edges"].items())
    with testing.as_variant("day1.communication", v):
        assert check("day1.communication", answer).score == 10
        column_rule = {e: ("sync_retry" if spec["needs_result"] else "async")
                       for e, spec in s["edges"].items()}
        assert check("day1.communication", column_rule).score <= 3


@pytest.mark.parametrize("answer, words", [
    ({("order", "cart"): "sync"}, "unknown edge"),
    ({("order", "product"): "grpc"}, "invalid"),
    ({("order", "product"): "sync"}, "missing"),
])
def test_communication_shape_errors(answer, words):
    fb = check("day1.communication", answer)
    assert fb.score == 0 and words in fb.wrong[0]


# ---- day1.challenge ---------------------------------------------------------------------------

def test_challenge_utilisation_and_cost(answers):
    result = day1.simulate_challenge(answers["day1.challenge"])
    assert result["utilisation"] == pytest.approx(
        {"order": 0.4, "product": 0.4, "inventory": 0.6, "payment": 0.8, "notification": 0.75})
    assert result["cost_usd_per_h"] == pytest.approx(13 * 0.05)
    assert result["p99_ms"] <= day1.CHALLENGE_SCENARIO["slo_p99_ms"]


def test_challenge_partial_credit(answers):
    design = copy.deepcopy(answers["day1.challenge"])
    all_sync = dict(design, edges=[(a, b, "sync") for a, b, _ in design["edges"]])
    fb = check("day1.challenge", all_sync)
    assert fb.score == 0, str(fb)  # misses the SLO: the coupling is not scored either
    starved = copy.deepcopy(design)
    starved["services"]["payment"]["replicas"] = 3  # 100 req/s x 40 ms = 4 busy workers
    fb2 = check("day1.challenge", starved)
    assert fb2.score == 0 and "overloaded" in " ".join(fb2.wrong)
    rich = copy.deepcopy(design)
    for spec in rich["services"].values():
        spec["replicas"] *= 2
    fb3 = check("day1.challenge", rich)
    assert fb3.score == 0 and "budget" in " ".join(fb3.wrong)  # the SLO bought at twice the cost
    missing = dict(design, edges=design["edges"][:-1])
    fb4 = check("day1.challenge", missing)
    assert fb4.score == 0 and "never calls" in " ".join(fb4.wrong)  # the checkout is broken
    events = dict(design, edges=[(a, b, "async") for a, b, _ in design["edges"]])
    fb5 = check("day1.challenge", events)  # fast and cheap, but nobody gets the price back
    assert fb5.score == 0 and "needs its result" in " ".join(fb5.wrong)
    coupled = dict(design, edges=[(a, b, "sync") if b == "payment" else (a, b, m)
                                  for a, b, m in design["edges"]])
    fb6 = check("day1.challenge", coupled)
    assert fb6.score in (0, 2, 9), str(fb6)
    for bad in (fb, fb2, fb3, fb4, fb5):
        _assert_partial(bad)
        assert not re.search(r"\d", bad.hint.replace("p99", "")), bad.hint


def test_challenge_cannot_claim_faster_services(answers):
    design = copy.deepcopy(answers["day1.challenge"])
    design["services"]["payment"]["service_time_ms"] = 1.0
    design["services"]["payment"]["replicas"] = 1
    fb = check("day1.challenge", design)
    assert "less than the work" in " ".join(fb.wrong)
    assert "overloaded" in " ".join(fb.wrong)  # the floor of 40 ms is what is simulated


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["services"].pop("payment"), "missing"),
    (lambda d: d["services"].__setitem__("cache", {"replicas": 1}), "unknown service"),
    (lambda d: d["edges"].append(("product", "order", "sync")), "cycle"),
    (lambda d: d["edges"].append(("order", "product")), "invalid"),
    (lambda d: d["edges"].append(("order", "order", "sync")), "different services"),
    (lambda d: d["services"]["order"].__setitem__("replicas", 0), "replicas"),
])
def test_challenge_shape_errors(mutate, words, answers):
    design = copy.deepcopy(answers["day1.challenge"])
    mutate(design)
    fb = check("day1.challenge", design)
    assert fb.score == 0 and words in fb.wrong[0], fb.wrong


def test_editing_a_shown_scenario_changes_no_grade(answers, monkeypatch):
    """Learners explore by editing the scenario dicts; grading reads its own copies."""
    monkeypatch.setitem(day1.TRADEOFFS_SCENARIO, "slo_p99_ms", 10.0)
    monkeypatch.setitem(day1.INSTANCE_TYPES["small"], "usd_per_h", 0.0)
    monkeypatch.setitem(day1.SAGA_FAILURE_PROFILE, "failure_probability", [0.5, 0.5, 0.5])
    monkeypatch.setitem(day1.CHALLENGE_SCENARIO, "budget_usd_per_h", 0.01)
    for exercise_id in ("day1.tradeoffs", "day1.lab1_cost", "day1.patterns", "day1.challenge"):
        assert check(exercise_id, answers[exercise_id]).score == 10


def test_numpy_numbers_are_accepted(answers):
    import numpy as np

    tradeoffs = dict(answers["day1.tradeoffs"])
    right = tradeoffs["p99_ms"]
    tradeoffs["p99_ms"] = lambda h, r: np.float32(right(h, r))
    tradeoffs["max_hops_within_slo"] = np.int64(tradeoffs["max_hops_within_slo"])
    assert check("day1.tradeoffs", tradeoffs).score == 10
    s = day1.SAGA_FAILURE_PROFILE
    rate = ref.compensation_rate(s["failure_probability"], s["compensation_failure_probability"],
                                 s["compensation_attempts"])
    patterns = dict(answers["day1.patterns"], compensation_rate=np.float64(rate))
    assert check("day1.patterns", patterns).score == 7.5  # a number, not a function: 2.5 of 5
    fn = answers["day1.patterns"]["compensation_rate"]
    patterns = dict(answers["day1.patterns"],
                    compensation_rate=lambda p, q, a: np.float32(fn(p, q, a)))
    assert check("day1.patterns", patterns).score == 10
    plan = {s: {"replicas": np.int32(e["replicas"]), "instance": e["instance"]}
            for s, e in LAB1_CHEAPEST_PLAN.items()}
    assert check("day1.lab1_cost", plan).score == 6


def test_graded_domain_model_is_the_one_notebook_02_shows():
    """Notebook 02 lets learners edit its own copy; the repository's copy must match ours."""
    import yaml
    from grading_fixtures import REPO

    shown = REPO / "notebooks" / "day1-microservices" / "domain-model.yaml"
    if not shown.exists():
        skip_or_fail("notebook 02's domain model is not there")
    model = yaml.safe_load(shown.read_text(encoding="utf-8"))
    assert model["entities"] == day1.DOMAIN_MODEL["entities"]
    assert model["operations"] == day1.DOMAIN_MODEL["operations"]
    assert model["extension"] == day1.DOMAIN_MODEL["extension"]


# ---- the learner's namespace holds no answer --------------------------------------------------

_SOLVER_NAMES = ("cheapest_capacity_plan", "cheapest_node_plan", "communication_reference",
                 "_tradeoffs_reference", "_pattern_key", "_PATTERN_KEY", "_NEW_CONTEXTS",
                 "_REVIEWS_APART", "_REFERENCE_PARTITIONS", "compensation_rate",
                 "_compensation_rate", "_PROBLEM_POOL", "_problems", "_tradeoffs_p99",
                 "_replica_p99_ms", "_cheapest_per_service")


def test_grading_day1_exposes_no_reference_solver():
    import grading.day1 as module

    names = set(dir(module))
    assert not names & set(_SOLVER_NAMES), sorted(names & set(_SOLVER_NAMES))
    assert not any(getattr(module, n).__module__ == "grading._instructor.day1"
                   for n in names if callable(getattr(module, n))
                   and hasattr(getattr(module, n), "__module__"))
    source = (REPO / "grading" / "day1.py").read_text(encoding="utf-8")
    for entity_pair in ('{"Shipment", "TrackingEvent"}', '{"Coupon", "CouponRedemption"}'):
        assert entity_pair not in source  # the answer comments went with the references


def _public_objects():
    import grading.day1 as module

    for name in sorted(n for n in dir(module) if not n.startswith("_")):
        obj = getattr(module, name)
        yield name, obj
        if callable(obj) and not isinstance(obj, type):
            try:
                yield f"{name}()", obj()
            except Exception:  # most need arguments: only what can be called bare counts
                pass


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_no_public_object_of_grading_day1_scores_as_an_answer(exercise_id):
    """Whatever a learner finds as grading.day1.<name>, called or not, and passes as the
    answer (or as the function inside one) scores at most 30 %."""
    candidates = list(_public_objects())
    assert len(candidates) > 20
    for name, obj in candidates:
        tries = [obj]
        if exercise_id == "day1.patterns":
            tries.append({"patterns": {}, "compensation_rate": obj})
        if exercise_id == "day1.tradeoffs":
            tries += [{"architecture": a, "p99_ms": obj, "max_hops_within_slo": 0}
                      for a in ("monolith", "microservices")]
        for answer in tries:
            fb = check(exercise_id, answer)
            assert fb.score <= 3, (name, str(fb))
