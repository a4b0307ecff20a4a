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
