"""Per-learner variants, learner stamps, hidden cases, trivial answers and closed-form checks."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from scipy import stats

import grading
from grading import check, day1, testing, variants
from grading._instructor import day1 as ref
from grading.notebooks import make_student_notebooks, read_roster, read_stamp
from grading_fixtures import (LAB1_CHEAPEST_COST, LAB1_CHEAPEST_PLAN, TRADEOFFS_P99_MS,
                              brute_force_compensation_rate)

SECRET = "an instructor secret of some length"


@pytest.fixture(autouse=True)
def no_stamp(monkeypatch):
    monkeypatch.delenv(variants.STAMP_ENV, raising=False)
    monkeypatch.delenv(variants.SECRET_ENV, raising=False)
    variants.clear_stamp()
    yield
    variants.clear_stamp()


# ---- stamps and variants ----------------------------------------------------------------------

def test_signature_depends_on_id_and_secret():
    sig = variants.sign("alice", SECRET)
    assert len(sig) == 32 and variants.verify("alice", sig, SECRET)
    assert not variants.verify("bob", sig, SECRET)
    assert not variants.verify("alice", sig, SECRET + "x")
    assert variants.sign("bob", SECRET) != sig
    with pytest.raises(ValueError, match="too short"):
        variants.sign("alice", "short")
    with pytest.raises(ValueError, match="learner id"):
        variants.sign("../etc", SECRET)


def test_variant_is_zero_without_a_stamp_and_stable_with_one(monkeypatch):
    assert grading.variant("day1.lab1_cost") == 0
    grading.stamp("alice", variants.sign("alice", SECRET))
    a = {e: grading.variant(e) for e in ("day1.lab1_cost", "day1.tradeoffs")}
    assert all(v > 0 for v in a.values()) and len(set(a.values())) == 2
    assert grading.variant("day1.lab1_cost") == a["day1.lab1_cost"]
    grading.stamp("bob", variants.sign("bob", SECRET))
    assert grading.variant("day1.lab1_cost") != a["day1.lab1_cost"]
    # batch grading's verified stamp wins over the notebook's cell; an empty one means none
    monkeypatch.setenv(variants.STAMP_ENV, "alice:" + variants.sign("alice", SECRET))
    assert grading.variant("day1.lab1_cost") == a["day1.lab1_cost"]
    monkeypatch.setenv(variants.STAMP_ENV, "")
    assert grading.variant("day1.lab1_cost") == 0


def test_scenarios_differ_by_variant_and_variant_zero_is_published():
    assert day1.scenario("day1.lab1_cost", 0) == day1.LAB1_COST_SCENARIO
    assert day1.scenario("day1.tradeoffs", 0) == day1.TRADEOFFS_SCENARIO
    for eid in ("day1.tradeoffs", "day1.lab1_cost", "day1.patterns", "day1.communication",
                "day1.decomposition", "day1.lab1_nodes"):
        shown = [day1.scenario(eid, v) for v in range(6)]
        assert all(shown[0] != s for s in shown[1:]), eid
        assert day1.scenario(eid, 3) == day1.scenario(eid, 3)
    with pytest.raises(ValueError, match="no variants"):
        day1.scenario("day1.nothing")
    with pytest.raises(ValueError, match="variant"):
        day1.scenario("day1.lab1_cost", -1)


def _reference_answer(eid: str, v: int):
    s = day1.scenario(eid, v)
    if eid == "day1.tradeoffs":
        r = ref.tradeoffs_reference(s)
        return {"architecture": r["architecture"], "max_hops_within_slo": r["max_hops_within_slo"],
                "p99_ms": lambda h, rate: ref.tradeoffs_p99(s, h, rate)}
    if eid == "day1.lab1_cost":
        return ref.cheapest_capacity_plan(s)[0]
    return {"patterns": ref.problems(v)[1],
            "compensation_rate": ref.compensation_rate(s["failure_probability"],
                                                       s["compensation_failure_probability"],
                                                       s["compensation_attempts"])}


@pytest.mark.parametrize("eid", ["day1.tradeoffs", "day1.lab1_cost", "day1.patterns"])
def test_an_answer_copied_from_another_variant_fails(eid):
    """Each variant's own right answer gets full marks there and loses marks elsewhere."""
    copied = []
    for a, b in itertools.permutations(range(1, 6), 2):
        with testing.as_variant(eid, a):
            own = _reference_answer(eid, a)
            assert check(eid, own).score >= {"day1.patterns": 7.5, "day1.lab1_cost": 6}.get(eid, 10)
        with testing.as_variant(eid, b):
            copied.append(check(eid, own).score)
    # day1.patterns: each variant has its own problems under the same neutral ids, and the
    # rate counts only as much as the problems are matched
    assert max(copied) < {"day1.lab1_cost": 6}.get(eid, 10)
    assert sum(copied) / len(copied) <= {"day1.patterns": 3, "day1.lab1_cost": 4}.get(eid, 7), copied


def test_hidden_seeds_depend_on_the_instructor_secret(monkeypatch):
    builtin = grading.hidden_seeds("day1.challenge", 2)
    assert builtin == grading.hidden_seeds("day1.challenge", 2) and len(set(builtin)) == 2
    assert builtin != grading.hidden_seeds("day1.communication", 2)
    monkeypatch.setenv(variants.SECRET_ENV, SECRET)
    assert grading.hidden_seeds("day1.challenge", 2) != builtin


def test_compensation_rate_function_is_checked_on_hidden_profiles(answers):
    """A function right only for three steps loses the hidden cases' points."""
    def three_steps(p, q, a):
        ok = 1 - q ** a
        return (1 - p[0]) * p[1] * ok + (1 - p[0]) * (1 - p[1]) * p[2] * ok ** 2

    fb = check("day1.patterns", dict(answers["day1.patterns"], compensation_rate=three_steps))
    lengths = {len(p[0]) for p in day1._hidden_profiles()}
    assert lengths != {3}
    assert fb.score == 7.5 and "hidden" in " ".join(fb.wrong), str(fb)


# ---- trivial answers --------------------------------------------------------------------------

FAST = ["day1.decomposition", "day1.lab1_cost", "day1.lab1_nodes", "day1.patterns",
        "day1.tradeoffs"]
SIMULATED = ["day1.challenge", "day1.communication"]
ACTED = ["day4.branching", "day4.ci_design", "day4.workflow"]  # sim and act; trivial answers tested in test_day4.py
DAY3 = ["day3.authz_policy", "day3.control_stages", "day3.rego_authz"]  # trivial answers tested in test_day3.py
FINOPS = ["day5.alerts", "day5.challenge", "day5.lab_cost", "day5.rightsizing",
          "day5.showback"]  # tested in test_day5.py and test_day5_challenge.py
DAY2 = ["day2.edge_limits", "day2.gateway_choice", "day2.kong_bundle", "day2.mesh_resilience",
        "day2.rollout_policy"]  # tested in test_day2.py


def test_every_exercise_registers_trivial_answers():
    assert set(grading.known_exercises()) == set(FAST) | set(SIMULATED) | set(ACTED) | set(DAY3) | set(FINOPS) | set(DAY2)
    with pytest.raises(KeyError, match="unknown"):
        grading.trivial_answers("day9.nothing")


def test_trivial_answers_score_at_most_30_percent_fast_exercises():
    scores = testing.assert_trivial_answers_score_low(0.30, FAST, range(6))
    assert len(scores) >= 6 * 30


def test_trivial_answers_score_at_most_30_percent_simulated_exercises():
    scores = testing.assert_trivial_answers_score_low(0.30, SIMULATED, (0, 1, 2, 3))
    assert len(scores) >= 4 * 14
    labels = {s.label for s in scores}
    assert "copied: the notebook's candidate 'all async, minimum'" in labels
    assert "copied: the notebook's candidate 'sync as needed, minimum'" in labels
    assert any("column rule" in label for label in labels)


def test_the_trivial_helper_catches_a_gameable_check():
    """Negative control: an exercise that gives points for any answer is caught."""
    @grading.exercise("test.gameable", max_score=10)
    def gameable(answer, g):
        g.award(5, "you answered")

    @grading.trivial("test.gameable")
    def _(v):
        return {"empty": {}, "uniform": 1, "extreme": 10**9, "copied": "x"}

    try:
        with pytest.raises(AssertionError, match="test.gameable"):
            testing.assert_trivial_answers_score_low(0.30, ["test.gameable"])
    finally:
        grading._REGISTRY.pop("test.gameable")
        grading._TRIVIAL.pop("test.gameable")


# ---- closed forms and brute force (not the grader's own functions) ----------------------------

def test_tradeoffs_reference_is_the_closed_form():
    want = ref.tradeoffs_reference(day1.scenario("day1.tradeoffs", 0))
    closed = 1000 * stats.gamma.ppf(0.99, 4, scale=1 / 75) + 4 * 2 * 2.5
    assert closed == pytest.approx(TRADEOFFS_P99_MS, rel=1e-12)
    assert want["p99_ms_at_load"] == pytest.approx(TRADEOFFS_P99_MS, rel=1e-9)
    # 5 hops: 1000 * gamma.ppf(0.99, 5, 1/75) + 25 ms <= 200 ms < the same for 6 hops
    assert 1000 * stats.gamma.ppf(0.99, 5, scale=1 / 75) + 25 <= 200
    assert 1000 * stats.gamma.ppf(0.99, 6, scale=1 / 75) + 30 > 200
    assert want["max_hops_within_slo"] == 5


@pytest.mark.parametrize("profile, q, a", [([0.02, 0.05, 0.03], 0.2, 2), ([0.1, 0.2], 0.0, 1),
                                           ([0.3, 0.01, 0.2, 0.15], 0.35, 3)])
def test_compensation_rate_against_enumeration(profile, q, a):
    assert ref.compensation_rate(profile, q, a) == pytest.approx(
        brute_force_compensation_rate(profile, q, a), rel=1e-12)
    assert brute_force_compensation_rate([0.02, 0.05, 0.03]) == pytest.approx(0.07693, rel=1e-9)


def _erlang_c(c: int, a: float) -> float:
    """Probability of waiting in M/M/c with offered load a = lambda/mu (textbook formula)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def _mmc_p99_ms(rate: float, mean_ms: float, c: int) -> float:
    """p99 of wait + service in M/M/c, by bisection on the exact tail (independent code)."""
    mu = 1000 / mean_ms
    if rate >= c * mu:
        return math.inf
    pw, theta = _erlang_c(c, rate / mu), c * mu - rate

    def tail(t):  # P(W + S > t), W ~ pw * Exp(theta), S ~ Exp(mu)
        if abs(theta - mu) < 1e-12:
            conv = pw * (1 + mu * t) * math.exp(-mu * t)
        else:
            conv = pw * (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
        return (1 - pw) * math.exp(-mu * t) + conv

    lo, hi = 0.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) > 0.01 else (lo, mid)
    return hi * 1000


def test_cheapest_plan_is_the_brute_force_minimum_over_instance_types():
    s = day1.scenario("day1.lab1_cost", 0)
    best_total = 0.0
    for service, load in s["services"].items():
        best = math.inf
        for inst, it in s["instance_types"].items():
            for n in range(s["min_replicas"], 65):
                p99 = _mmc_p99_ms(load["arrival_rate_per_s"] / n,
                                  load["service_time_ms"] / it["speed"], int(it["vcpu"]))
                if p99 <= s["slo_p99_ms"]:
                    best = min(best, n * it["usd_per_h"])
                    break
        plan = LAB1_CHEAPEST_PLAN[service]
        assert plan["replicas"] * s["instance_types"][plan["instance"]]["usd_per_h"] == \
            pytest.approx(best, rel=1e-12), service
        best_total += best
    assert best_total == pytest.approx(LAB1_CHEAPEST_COST, rel=1e-12)
    plan, cost = ref.cheapest_capacity_plan(s)
    assert plan == LAB1_CHEAPEST_PLAN and cost == pytest.approx(LAB1_CHEAPEST_COST, rel=1e-12)


# ---- student notebooks per learner ------------------------------------------------------------

def _solution_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nb = new_notebook(cells=[
        new_markdown_cell("# Lesson"),
        new_code_cell("print('instructor: where learners stall')", metadata={"tags": ["instructor"]}),
        new_code_cell("answer = 42", metadata={"tags": ["solution"]}),
        new_code_cell("import grading\nprint(grading.variant('day1.lab1_cost'), answer)"),
    ])
    nbformat.write(nb, src / "lesson.ipynb")
    return src


def _cli(*args, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "grading", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_student_notebooks_per_learner_are_stamped(tmp_path):
    src = _solution_folder(tmp_path)
    roster = tmp_path / "roster.csv"
    roster.write_text("learner_id,name\nalice,Alice A\nbob@example.org,Bob B\n")
    done = _cli("student-notebooks", str(tmp_path / "out"), "--src", str(src), "--roster",
                str(roster), env={variants.SECRET_ENV: SECRET})
    assert done.returncode == 0, done.stderr
    assert "2 learner(s)" in done.stdout
    for learner in ("alice", "bob@example.org"):
        nb = nbformat.read(tmp_path / "out" / learner / "lesson.ipynb", as_version=4)
        stamp = read_stamp(nb)
        assert stamp.learner_id == learner and variants.verify(learner, stamp.signature, SECRET)
        assert variants.STAMP_TAG in nb.cells[0].metadata["tags"]
        assert stamp.signature in nb.cells[0].source
        text = "\n".join(c.source for c in nb.cells)
        assert "instructor:" not in text and "answer = 42" not in text
    assert read_roster(roster) == ["alice", "bob@example.org"]


@pytest.mark.parametrize("content, words", [
    ("name\nalice\n", "learner_id"), ("learner_id\nalice\nalice\n", "twice"),
    ("learner_id\n../x\n", "row 2"), ("learner_id\n", "no learner")])
def test_bad_rosters_are_one_line_errors(tmp_path, content, words):
    src = _solution_folder(tmp_path)
    roster = tmp_path / "roster.csv"
    roster.write_text(content)
    done = _cli("student-notebooks", str(tmp_path / "out"), "--src", str(src), "--roster",
                str(roster), env={variants.SECRET_ENV: SECRET})
    assert done.returncode == 2 and words in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_roster_needs_the_secret(tmp_path):
    src = _solution_folder(tmp_path)
    roster = tmp_path / "roster.csv"
    roster.write_text("learner_id\nalice\n")
    done = _cli("student-notebooks", str(tmp_path / "out"), "--src", str(src), "--roster",
                str(roster), env={variants.SECRET_ENV: ""})
    assert done.returncode == 2 and "secret" in done.stderr


def test_batch_grading_verifies_stamps_and_grades_the_verified_variant(tmp_path, monkeypatch):
    """A valid stamp grades the learner's variant (positive control: the learner's right answer
    gets full marks); a forged or moved stamp is flagged and graded as variant 0."""
    from grading.batch import grade_folder
    from grading.notebooks import stamp_notebook

    sig = variants.sign("alice", SECRET)
    grading.stamp("alice", sig)
    alice_plan = ref.cheapest_capacity_plan(day1.scenario("day1.lab1_cost"))[0]
    variants.clear_stamp()
    assert check("day1.lab1_cost", alice_plan).score < 6  # not variant 0's answer
    cell = f"import grading\ngrading.check('day1.lab1_cost', {alice_plan!r})"
    subs = tmp_path / "subs"
    for folder, learner, signature in (("alice", "alice", sig), ("eve", "alice", sig),
                                       ("mallory", "mallory", "0" * 32)):
        (subs / folder).mkdir(parents=True)
        nb = stamp_notebook(new_notebook(cells=[new_code_cell(cell)]), learner, signature)
        nbformat.write(nb, subs / folder / "lab.ipynb")
    grades = grade_folder(subs, timeout_s=120, secret=SECRET).set_index("submission")
    assert grades.loc["alice/lab.ipynb", "stamp"] == "valid"
    assert grades.loc["alice/lab.ipynb", "day1.lab1_cost"] == 6  # a plan, not a function
    assert grades.loc["eve/lab.ipynb", "stamp"] == "moved"
    assert grades.loc["mallory/lab.ipynb", "stamp"] == "forged"
    assert grades.loc["eve/lab.ipynb", "day1.lab1_cost"] < 6


def test_communication_answer_copied_from_another_variant_fails():
    """What the order must wait for differs by variant (CloudMart's 202 pending, an at-once
    stock check, a confirmed-or-declined answer), so another learner's right choice is wrong
    here: an event where a result is needed scores 0, waiting where none is needed loses."""
    # pairs whose right choices differ (a variant may share another's: four edges, few modes)
    pairs = [(1, 2), (2, 1), (4, 1), (8, 2), (0, 2), (0, 4)]
    copied = []
    for a, b in pairs:
        own = ref.communication_reference(day1.scenario("day1.communication", a))
        with testing.as_variant("day1.communication", a):
            assert check("day1.communication", own).score == 10
        with testing.as_variant("day1.communication", b):
            copied.append(check("day1.communication", own).score)
    assert max(copied) < 10 and sum(copied) / len(copied) <= 3, copied
    flags = {tuple(spec["needs_result"] for spec in day1.scenario("day1.communication", v)["edges"].values())
             for v in range(12)}
    assert len(flags) >= 3, flags
    choices = {tuple(sorted(ref.communication_reference(day1.scenario("day1.communication", v))
                            .items())) for v in range(12)}
    assert len(choices) >= 4, choices
