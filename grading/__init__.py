"""Exercise checks with partial credit and hints, keyed by exercise id.

A learner calls ``grading.check("day1.decomposition", answer)`` as the last line of a notebook
cell and sees the feedback at once: score, maximum, what is right, what is wrong and a hint —
never the answer.

Checks are plain functions registered with :func:`exercise`::

    @exercise("day1.patterns", max_score=10)
    def check_patterns(answer, fb):
        ...  # fb.add_right(...), fb.add_wrong(..., points_lost), fb.hint = ...

When the environment variable ``CLOUDMART_GRADING_RESULTS`` names a file, every check result is
also appended to it as one JSON line; batch grading (:mod:`grading.batch`) reads that file.
When the learner opted in with ``CLOUDMART_CLASS_URL`` and ``CLOUDMART_CLASS_TOKEN``, the learner
id, exercise id and score are also posted to the instructor's class server (:mod:`grading.progress`).
"""

from __future__ import annotations

import html
import importlib
import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

__all__ = [
    "AnswerShapeError",
    "hidden_seeds",
    "stamp",
    "variant",
    "Feedback",
    "UnknownExerciseError",
    "check",
    "exercise",
    "known_exercises",
    "max_score",
    "trivial",
    "trivial_answers",
]

RESULTS_ENV = "CLOUDMART_GRADING_RESULTS"

from grading.variants import hidden_seeds, stamp, variant  # noqa: E402  (re-exported)
from course_i18n import t  # noqa: E402  (feedback in the course language)

# Modules whose import registers exercises; loaded on first use so that importing `grading`
# stays cheap.
_EXERCISE_MODULES = ("grading.day1", "grading.day2", "grading.day3", "grading.day4", "grading.day5")


class UnknownExerciseError(KeyError):
    """Raised by :func:`check` for an exercise id that no check is registered under."""

    def __str__(self) -> str:  # KeyError would repr() the message; show it as written
        return str(self.args[0]) if self.args else "unknown exercise"


class AnswerShapeError(ValueError):
    """Raised inside a check when the learner's answer has the wrong shape.

    :func:`check` turns it into feedback with score 0 and this message; the learner never sees
    a traceback for a wrong-shaped answer.
    """


@dataclass
class Feedback:
    """The result of one check: what the learner sees and what batch grading records."""

    exercise_id: str
    score: float
    max_score: float
    right: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    hint: str | None = None

    @property
    def passed(self) -> bool:
        """True when the answer earned full marks."""
        return self.score >= self.max_score

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-serialisable)."""
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"{self.exercise_id}: {_fmt_score(self.score)}/{_fmt_score(self.max_score)}"]
        lines += [f"  [ok] {msg}" for msg in self.right]
        lines += [f"  [x]  {msg}" for msg in self.wrong]
        if self.hint:
            lines.append("  " + t("hint: {hint}", hint=self.hint))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        ratio = self.score / self.max_score if self.max_score else 0.0
        colour = "#2e7d32" if ratio >= 1 else ("#ef6c00" if ratio > 0 else "#c62828")
        esc = html.escape
        items = "".join(
            f'<li style="color:#2e7d32">&#10003; {esc(m)}</li>' for m in self.right
        ) + "".join(f'<li style="color:#c62828">&#10007; {esc(m)}</li>' for m in self.wrong)
        hint = (
            f'<div style="margin-top:4px"><b>{esc(t("Hint:"))}</b> {esc(self.hint)}</div>' if self.hint else ""
        )
        return (
            f'<div style="border-left:4px solid {colour};padding:4px 10px;font-family:sans-serif">'
            f'<div><b>{esc(self.exercise_id)}</b> &mdash; '
            f'<span style="color:{colour};font-weight:bold">'
            f"{_fmt_score(self.score)} / {_fmt_score(self.max_score)}</span></div>"
            f'<ul style="margin:4px 0;padding-left:18px">{items}</ul>{hint}</div>'
        )


def _fmt_score(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


class Grader:
    """Collects points for one check. A check function receives one and fills it in."""

    def __init__(self, exercise_id: str, max_score: float) -> None:
        self.exercise_id = exercise_id
        self.max_score = max_score
        self.score = 0.0
        self.right: list[str] = []
        self.wrong: list[str] = []
        self.hint: str | None = None

    def award(self, points: float, message: str) -> None:
        """Add ``points`` and record ``message`` as something the learner got right."""
        self.score += points
        self.right.append(message)

    def partial(self, points: float, message: str) -> None:
        """Add ``points`` (less than the criterion's worth) and record ``message`` as wrong."""
        self.score += points
        self.wrong.append(message)

    def miss(self, message: str) -> None:
        """Record ``message`` as something the learner got wrong (no points)."""
        self.wrong.append(message)

    def suggest(self, hint: str) -> None:
        """Set the hint unless an earlier, more important one is already set."""
        if self.hint is None:
            self.hint = hint

    def feedback(self) -> Feedback:
        score = round(min(max(self.score, 0.0), self.max_score), 1)
        return Feedback(self.exercise_id, score, self.max_score, self.right, self.wrong, self.hint)


CheckFn = Callable[[Any, Grader], None]


@dataclass(frozen=True)
class _Exercise:
    exercise_id: str
    max_score: float
    fn: CheckFn


_REGISTRY: dict[str, _Exercise] = {}


def exercise(exercise_id: str, *, max_score: float = 10) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn(answer, grader)`` as the check of ``exercise_id`` worth ``max_score``."""
    if not isinstance(max_score, (int, float)) or max_score <= 0:
        raise ValueError(f"max_score={max_score!r} is invalid; it must be a positive number")

    def register(fn: CheckFn) -> CheckFn:
        if exercise_id in _REGISTRY and _REGISTRY[exercise_id].fn is not fn:
            raise ValueError(f"exercise {exercise_id!r} is already registered")
        _REGISTRY[exercise_id] = _Exercise(exercise_id, float(max_score), fn)
        return fn

    return register


TrivialFn = Callable[[int], dict[str, Any]]
_TRIVIAL: dict[str, TrivialFn] = {}
TRIVIAL_KINDS = ("empty", "uniform", "extreme", "copied")


def trivial(exercise_id: str) -> Callable[[TrivialFn], TrivialFn]:
    """Register ``fn(variant) -> {label: answer}``: the trivial answers of ``exercise_id`` that
    must score low — each label starts with its kind, one of :data:`TRIVIAL_KINDS` (empty,
    uniform, extreme, copied-from-the-notebook), e.g. ``"uniform: all sync"``."""

    def register(fn: TrivialFn) -> TrivialFn:
        _TRIVIAL[exercise_id] = fn
        return fn

    return register


def trivial_answers(exercise_id: str, variant: int = 0) -> dict[str, Any]:
    """The trivial answers registered for ``exercise_id`` (see :func:`trivial`); ``KeyError``
    names an exercise that has none."""
    _lookup(exercise_id)
    if exercise_id not in _TRIVIAL:
        raise KeyError(f"exercise {exercise_id!r} registers no trivial answers")
    return _TRIVIAL[exercise_id](variant)


def _load_exercises() -> None:
    for name in _EXERCISE_MODULES:
        importlib.import_module(name)


def known_exercises() -> list[str]:
    """Sorted ids of every registered exercise."""
    _load_exercises()
    return sorted(_REGISTRY)


def max_score(exercise_id: str) -> float:
    """The maximum score of ``exercise_id``."""
    return _lookup(exercise_id).max_score


def _lookup(exercise_id: str) -> _Exercise:
    _load_exercises()
    try:
        return _REGISTRY[exercise_id]
    except (KeyError, TypeError):
        raise UnknownExerciseError(
            f"unknown exercise id {exercise_id!r}; known ids: {', '.join(sorted(_REGISTRY))}"
        ) from None


def check(exercise_id: str, answer: Any) -> Feedback:
    """Check ``answer`` for ``exercise_id`` and return the feedback.

    As the last line of a notebook cell the feedback is displayed (HTML in Jupyter, plain text
    elsewhere). An unknown id raises :class:`UnknownExerciseError` listing the known ids; an
    answer of the wrong shape gives score 0 and a message saying what shape is expected.
    """
    ex = _lookup(exercise_id)
    grader = Grader(ex.exercise_id, ex.max_score)
    try:
        ex.fn(answer, grader)
        fb = grader.feedback()
    except AnswerShapeError as err:
        fb = Feedback(ex.exercise_id, 0.0, ex.max_score, [], [str(err)], None)
    _record(fb)
    if os.environ.get("CLOUDMART_CLASS_URL"):   # opt-in only (grading/progress.py)
        from grading import progress

        progress.report(fb.exercise_id, fb.score, fb.max_score)
    return fb


def _record(fb: Feedback) -> None:
    """Append ``fb`` as one JSON line to the file named by CLOUDMART_GRADING_RESULTS, if set."""
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(fb.to_dict()) + "\n")


def _is_number(x: Any) -> bool:
    """A finite real number (NumPy scalars included), not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    """An integer (NumPy integers included), not a bool."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)
