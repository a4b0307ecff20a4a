"""day4.workflow: the worked solution scores full marks, trivial answers score at most 30 %, and the
hidden events and the fixture's manifests are what decide (graded with actionlint, zizmor and act)."""

from __future__ import annotations

from pathlib import Path

import pytest

import grading
from grading import day4, testing, variants

SOLUTION = (Path(__file__).with_name("day4_workflow_solution.yml")).read_text()


pytestmark = pytest.mark.usefixtures("no_stamp")   # each test sets the variant it needs


def test_the_solution_scores_full_marks():
    fb = grading.check("day4.workflow", SOLUTION)
    assert fb.score == fb.max_score, str(fb)


def test_trivial_answers_score_at_most_30_percent():
    scores = testing.assert_trivial_answers_score_low(0.30, ["day4.workflow"], (0,))
    assert {s.label.split(":")[0] for s in scores} == set(grading.TRIVIAL_KINDS)


def test_a_release_job_on_every_push_loses_the_event_points():
    broken = SOLUTION.replace("    if: startsWith(github.ref, 'refs/tags/')\n", "")
    fb = grading.check("day4.workflow", broken)
    assert fb.score <= 6, str(fb)
    assert "push to the default branch" in str(fb)


def test_another_variant_needs_its_own_branch_and_artifact():
    v = next(i for i in range(1, 200) if day4.scenario(variant=i)["default_branch"] != "main")
    with testing.as_variant("day4.workflow", v):
        fb = grading.check("day4.workflow", SOLUTION)
    assert fb.score <= 3, str(fb)


def test_bad_yaml_is_a_miss_with_its_position():
    fb = grading.check("day4.workflow", "on: push\njobs: [\n")
    assert fb.score == 0 and "invalid YAML" in str(fb)


def test_hidden_events_differ_from_the_shown_ones():
    s = day4.scenario(variant=0)
    shown = [p for _, _, p, _ in day4.workflow_events(s, 0)]
    hidden = [p for _, _, p, _ in day4.workflow_events(s, variants.hidden_seeds("day4.workflow", 1)[0])]
    assert shown != hidden


# --- day4.branching --------------------------------------------------------------------------------

BRANCHING_SOLUTION = {"strategy": "trunk", "release_branches": True, "release_every_days": 0.25, "approval": "environment"}


def test_the_branching_solution_scores_full_marks():
    fb = grading.check("day4.branching", BRANCHING_SOLUTION)
    assert fb.score == fb.max_score, str(fb)


@pytest.mark.parametrize("v", [0, 1, 2, 3])
def test_trivial_branching_answers_score_at_most_30_percent(v):
    scores = testing.assert_trivial_answers_score_low(0.30, ["day4.branching"], (v,))
    assert {s.label.split(":")[0] for s in scores} == set(grading.TRIVIAL_KINDS)


@pytest.mark.parametrize("v", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("approval", ["none", "environment"])
def test_always_github_flow_fails_the_multi_version_team(v, approval):
    answer = {"strategy": "github_flow", "release_branches": False, "release_every_days": 0, "approval": approval}
    with testing.as_variant("day4.branching", v):
        assert day4.scenario("day4.branching", v)["supported_versions"] >= 2
        fb = grading.check("day4.branching", answer)
    assert fb.score <= 3, str(fb)
    assert "release branch" in str(fb)


def test_an_approval_of_every_merge_overloads_the_approver():
    every_merge = dict(BRANCHING_SOLUTION, release_every_days=0)
    fb = grading.check("day4.branching", every_merge)
    assert fb.score < 6 and "lead time p85" in str(fb), str(fb)


def test_a_long_release_train_is_slow_and_risky():
    fb = grading.check("day4.branching", dict(BRANCHING_SOLUTION, release_every_days=3))
    assert fb.score <= 3, str(fb)


def test_skipping_the_regulated_approval_is_not_compliant():
    fb = grading.check("day4.branching", dict(BRANCHING_SOLUTION, approval="none"))
    assert fb.score == 0 and "approval gate" in str(fb), str(fb)


@pytest.mark.parametrize("answer, message", [
    ({"strategy": "trunk"}, "exactly the keys"),
    (dict(BRANCHING_SOLUTION, strategy="yolo"), "valid: one of trunk, github_flow, gitflow"),
    (dict(BRANCHING_SOLUTION, release_every_days=-1), "[0, 60]"),
    (dict(BRANCHING_SOLUTION, strategy="gitflow", release_every_days=0), "GitFlow"),
    (dict(BRANCHING_SOLUTION, strategy="github_flow"), "GitHub Flow deploys main on every merge"),
    (dict(BRANCHING_SOLUTION, approval="manager"), "valid: one of none, environment"),
])
def test_a_wrong_shaped_branching_answer_names_the_valid_range(answer, message):
    fb = grading.check("day4.branching", answer)
    assert fb.score == 0 and message in str(fb), str(fb)


def test_branching_hidden_cases_differ_from_the_shown_one():
    cases = day4.branching_cases(day4.scenario("day4.branching", 0))
    assert len(cases) == 3 and len({seed for seed, _ in cases}) == 3
    assert any(rate != cases[0][1] for _, rate in cases[1:])


def test_the_sim_is_what_decides_the_branching_score():
    """The same answer scores differently when the team's failure probability makes batches too risky."""
    from unittest import mock

    riskier = dict(day4.BRANCHING_SCENARIO, p_fail_per_change=0.05)
    with mock.patch.object(day4, "_branching_scenario", lambda v: riskier):
        fb = grading.check("day4.branching", BRANCHING_SOLUTION)
    assert fb.score < 8 and "change failure rate" in str(fb), str(fb)


# --- day4.ci_design ----------------------------------------------------------------------------------

def _ci_solution(lockfile="requirements.txt"):
    return {"cache_key": f"deps-${{{{ runner.os }}}}-${{{{ hashFiles('{lockfile}') }}}}", "restore_keys": ["deps-${{ runner.os }}-"],
            "max_parallel": 6, "self_hosted_runners": 3,
            "runs_on": "${{ github.event.pull_request.head.repo.fork && 'ubuntu-latest' || 'self-hosted' }}",
            "concurrency_group": "ci-${{ github.event.pull_request.number || github.sha }}",
            "cancel_in_progress": "${{ github.event_name == 'pull_request' }}"}


def test_the_ci_design_solution_scores_full_marks():
    fb = grading.check("day4.ci_design", _ci_solution())
    assert fb.score == fb.max_score, str(fb)


def test_trivial_ci_designs_score_at_most_30_percent():
    scores = testing.assert_trivial_answers_score_low(0.30, ["day4.ci_design"], (0,))
    assert {s.label.split(":")[0] for s in scores} == set(grading.TRIVIAL_KINDS)


def test_a_key_on_another_variants_lockfile_is_stale_by_acts_hashfiles():
    v = next(i for i in range(1, 200) if day4.scenario("day4.ci_design", i)["lockfile"] == "poetry.lock")
    with testing.as_variant("day4.ci_design", v):
        fb = grading.check("day4.ci_design", _ci_solution("requirements.txt"))
    assert fb.score <= 7 and "does not change when the lockfile changes" in str(fb), str(fb)


def test_self_hosted_runners_for_fork_prs_lose_the_point():
    fb = grading.check("day4.ci_design", dict(_ci_solution(), runs_on="self-hosted"))
    assert "fork's pull request runs on a self-hosted runner" in str(fb), str(fb)
    assert fb.score < fb.max_score


def test_the_key_design_is_read_from_the_evaluated_keys():
    probes = lambda a, a2, b: {"push A": {"KEY": a}, "push A2": {"KEY": a2}, "push B": {"KEY": b}}
    assert day4._key_design(probes("k-1", "k-1", "k-2")) == "lockfile_hash"
    assert day4._key_design(probes("k", "k", "k")) == "static"
    assert day4._key_design(probes("k-a", "k-b", "k-c")) == "commit_sha"


def test_the_sim_trades_time_against_cost():
    s = day4.scenario("day4.ci_design", 0)
    a = _ci_solution()
    outcome = lambda **kw: day4.ci_design_outcome(s, dict(a, **kw), "lockfile_hash", True, False, True)
    few, many = outcome(self_hosted_runners=2), outcome(self_hosted_runners=6)
    assert few["mean_s"] > many["mean_s"] and few["usd_per_day"] < many["usd_per_day"]
    assert outcome(max_parallel=2)["mean_s"] > outcome(max_parallel=6)["mean_s"]


@pytest.mark.parametrize("change, message", [
    ({"max_parallel": 0}, "[1, 6]"), ({"self_hosted_runners": 50}, "[0, 20]"),
    ({"cache_key": ""}, "cache_key"), ({"restore_keys": "deps-"}, "restore_keys"),
])
def test_a_wrong_shaped_ci_design_names_the_valid_range(change, message):
    fb = grading.check("day4.ci_design", dict(_ci_solution(), **change))
    assert fb.score == 0 and message in str(fb), str(fb)
