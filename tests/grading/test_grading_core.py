"""grading.check, Feedback display and the exercise registry."""

from __future__ import annotations

import json

import pytest

import grading
from grading import AnswerShapeError, Feedback, UnknownExerciseError, check, exercise

DAY1 = ["day1.challenge", "day1.communication", "day1.decomposition", "day1.lab1_cost",
        "day1.patterns", "day1.tradeoffs"]


def test_day1_exercises_are_registered():
    assert set(DAY1) <= set(grading.known_exercises())
    assert all(grading.max_score(e) == 10 for e in DAY1)


def test_unknown_id_lists_known_ids():
    with pytest.raises(UnknownExerciseError) as err:
        check("day1.decompostion", {})
    message = str(err.value)
    assert "'day1.decompostion'" in message
    for known in DAY1:
        assert known in message
    assert isinstance(err.value, KeyError)


def test_unhashable_id_is_a_clear_error():
    with pytest.raises(UnknownExerciseError, match="unknown exercise id"):
        check(["day1.patterns"], {})


def test_feedback_text_is_deterministic_and_complete():
    fb = Feedback("day1.x", 7.5, 10, ["a is right"], ["b is wrong"], "look at b")
    assert str(fb) == ("day1.x: 7.5/10\n  [ok] a is right\n  [x]  b is wrong\n  hint: look at b")
    assert repr(fb) == str(fb)
    assert not fb.passed
    assert Feedback("day1.x", 10, 10).passed


def test_feedback_html_escapes_messages():
    fb = Feedback("day1.x", 0, 10, [], ["<script>alert(1)</script>"], "use <b>")
    page = fb._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "0 / 10" in page and "use &lt;b&gt;" in page


@pytest.fixture
def toy_exercise():
    @exercise("test.toy", max_score=4)
    def toy(answer, g):
        if not isinstance(answer, int):
            raise AnswerShapeError(f"expected an int, got {type(answer).__name__}")
        if answer == 42:
            g.award(4, "right")
        else:
            g.award(1, "tried")
            g.miss("not the answer")
            g.suggest("think of the ultimate question")
        g.award(100, "an over-generous criterion")  # must be clamped to max_score

    yield "test.toy"
    grading._REGISTRY.pop("test.toy", None)


def test_scores_are_clamped_and_shape_errors_give_zero(toy_exercise):
    assert check(toy_exercise, 42).score == 4
    assert check(toy_exercise, 1).score == 4  # clamped
    fb = check(toy_exercise, "42")
    assert (fb.score, fb.max_score) == (0, 4)
    assert fb.wrong == ["expected an int, got str"] and fb.right == []


def test_duplicate_registration_and_bad_max_score_are_rejected(toy_exercise):
    with pytest.raises(ValueError, match="already registered"):
        exercise(toy_exercise)(lambda a, g: None)
    with pytest.raises(ValueError, match="max_score"):
        exercise("test.other", max_score=0)


def test_results_are_recorded_when_asked(tmp_path, monkeypatch, answers):
    out = tmp_path / "results.jsonl"
    monkeypatch.setenv(grading.RESULTS_ENV, str(out))
    check("day1.patterns", answers["day1.patterns"])
    check("day1.patterns", 3)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["exercise_id"], r["score"]) for r in records] == [
        ("day1.patterns", 10.0), ("day1.patterns", 0.0)]


def test_nothing_is_recorded_by_default(tmp_path, monkeypatch, answers):
    monkeypatch.delenv(grading.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    check("day1.patterns", answers["day1.patterns"])
    assert list(tmp_path.iterdir()) == []
