"""Input checks shared by every model: a bad value raises ``ValueError`` naming the parameter,
the value and the valid range."""

from __future__ import annotations

import math


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def check_positive(name: str, value) -> float:
    """Require a finite number > 0."""
    if not _is_number(value) or not value > 0 or math.isinf(value):
        raise ValueError(f"{name}: got {value!r}; valid: a finite number > 0")
    return float(value)


def check_nonnegative(name: str, value) -> float:
    """Require a finite number >= 0."""
    if not _is_number(value) or not value >= 0 or math.isinf(value):
        raise ValueError(f"{name}: got {value!r}; valid: a finite number >= 0")
    return float(value)


def check_fraction(name: str, value, *, closed_high: bool = True) -> float:
    """Require a probability in [0, 1] (or [0, 1) with ``closed_high=False``)."""
    ok = _is_number(value) and 0 <= value and (value <= 1 if closed_high else value < 1)
    if not ok:
        bound = "[0, 1]" if closed_high else "[0, 1)"
        raise ValueError(f"{name}: got {value!r}; valid: a number in {bound}")
    return float(value)


def check_int(name: str, value, minimum: int = 1) -> int:
    """Require an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: got {value!r}; valid: an integer >= {minimum}")
    return value


def check_utilisation(name: str, value) -> float:
    """Require a utilisation in [0, 1), as a stable-queue formula needs."""
    if not _is_number(value) or not 0 <= value < 1:
        raise ValueError(
            f"{name}: got {value!r}; valid: a utilisation in [0, 1) (the queue is unstable otherwise)"
        )
    return float(value)
