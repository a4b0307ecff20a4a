"""Test helpers for exercise authors: trivial answers must score low.

:func:`trivial_answer_scores` runs every trivial answer registered with :func:`grading.trivial`
(empty, uniform, extreme, copied from the notebook) against its exercise, for each variant
asked for, under that variant's learner stamp; :func:`assert_trivial_answers_score_low` fails
if any exercise registers none, lacks one of the four kinds, or lets one score above the bound.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass

import grading
from grading import variants

__all__ = ["TrivialScore", "as_variant", "assert_trivial_answers_score_low",
           "trivial_answer_scores"]


@dataclass(frozen=True)
class TrivialScore:
    exercise_id: str
    variant: int
    label: str
    fraction: float
    feedback: str




@contextmanager
def as_variant(exercise_id: str, v: int):
    """Run the body as a learner whose variant of ``exercise_id`` is ``v`` (0: no stamp)."""
    saved = os.environ.get(variants.STAMP_ENV)
    original = variants.variant
    try:
        os.environ[variants.STAMP_ENV] = ""
        if v:
            def fixed(eid: str) -> int:
                return v if eid == exercise_id else original(eid)
            variants.variant = fixed  # type: ignore[assignment]
        yield
    finally:
        variants.variant = original  # type: ignore[assignment]
        if saved is None:
            os.environ.pop(variants.STAMP_ENV, None)
        else:
            os.environ[variants.STAMP_ENV] = saved


def trivial_answer_scores(exercise_ids: Iterable[str] | None = None,
                          variant_numbers: Iterable[int] = (0,)) -> list[TrivialScore]:
    """Score of every trivial answer of every exercise (all registered ones by default)."""
    ids = list(exercise_ids) if exercise_ids is not None else grading.known_exercises()
    out = []
    for eid in ids:
        for v in variant_numbers:
            with as_variant(eid, v):
                for label, answer in grading.trivial_answers(eid, v).items():
                    fb = grading.check(eid, answer)
                    out.append(TrivialScore(eid, v, label, fb.score / fb.max_score, str(fb)))
    return out


def assert_trivial_answers_score_low(max_fraction: float = 0.30,
                                     exercise_ids: Iterable[str] | None = None,
                                     variant_numbers: Iterable[int] = (0,)) -> list[TrivialScore]:
    """Fail unless every exercise has trivial answers of all four kinds and each scores at most
    ``max_fraction`` of the maximum."""
    ids = list(exercise_ids) if exercise_ids is not None else grading.known_exercises()
    for eid in ids:
        kinds = {label.split(":", 1)[0] for label in grading.trivial_answers(eid, 0)}
        missing = sorted(set(grading.TRIVIAL_KINDS) - kinds)
        assert not missing, f"{eid}: no trivial answer of kind(s) {', '.join(missing)}"
    scores = trivial_answer_scores(ids, variant_numbers)
    too_high = [s for s in scores if s.fraction > max_fraction + 1e-9]
    assert not too_high, "\n\n".join(
        f"{s.exercise_id} variant {s.variant}, {s.label}: {100 * s.fraction:.0f}%\n{s.feedback}"
        for s in too_high)
    return scores
