"""Service-time and inter-arrival distributions.

Every distribution is a small frozen value measured in **seconds** (the one time unit inside every
model of :mod:`sim`). Each knows its mean and squared coefficient of variation, which is what the
analytic formulas in :mod:`sim.theory` need, and draws samples in blocks from a
``numpy.random.Generator`` so that a model never touches global random state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validate import check_positive

__all__ = [
    "Distribution",
    "Exponential",
    "Deterministic",
    "LogNormal",
    "Gamma",
    "Empirical",
    "DISTRIBUTIONS",
    "make_distribution",
    "as_distribution",
    "fit_service_time",
    "Stream",
]

_BLOCK = 8192


class Distribution:
    """Base class: a non-negative random duration in seconds."""

    name = "distribution"

    @property
    def mean_s(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def scv(self) -> float:
        """Squared coefficient of variation, Var/mean²."""
        raise NotImplementedError  # pragma: no cover

    @property
    def cv(self) -> float:
        """Coefficient of variation, sd/mean."""
        return math.sqrt(self.scv)

    @property
    def second_moment_s2(self) -> float:
        """E[S²] in s², as used by Pollaczek–Khinchine."""
        return self.mean_s**2 * (1.0 + self.scv)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` samples (seconds) from ``rng``."""
        raise NotImplementedError  # pragma: no cover

    def scaled(self, factor: float) -> "Distribution":
        """The same shape with every duration multiplied by ``factor`` (e.g. a faster instance)."""
        raise NotImplementedError  # pragma: no cover


@dataclass(frozen=True)
class Exponential(Distribution):
    """Exponential duration with the given mean (memoryless; M in Kendall notation)."""

    mean: float
    name = "exponential"

    def __post_init__(self):
        check_positive("mean", self.mean)

    @classmethod
    def from_rate(cls, rate_per_s: float) -> "Exponential":
        """Exponential with rate ``rate_per_s`` (mean 1/rate)."""
        check_positive("rate_per_s", rate_per_s)
        return cls(1.0 / rate_per_s)

    @property
    def mean_s(self) -> float:
        return self.mean

    @property
    def scv(self) -> float:
        return 1.0

    def sample(self, rng, size):
        return rng.exponential(self.mean, size)

    def scaled(self, factor):
        return Exponential(self.mean * factor)


@dataclass(frozen=True)
class Deterministic(Distribution):
    """A constant duration (D in Kendall notation)."""

    value: float
    name = "deterministic"

    def __post_init__(self):
        check_positive("value", self.value)

    @property
    def mean_s(self) -> float:
        return self.value

    @property
    def scv(self) -> float:
        return 0.0

    def sample(self, rng, size):
        return np.full(size, self.value)

    def scaled(self, factor):
        return Deterministic(self.value * factor)


@dataclass(frozen=True)
class _MeanCV(Distribution):
    """A duration given by its mean and coefficient of variation (cv = standard deviation / mean)."""

    mean: float
    cv: float = 1.0

    def __post_init__(self):
        check_positive("mean", self.mean)
        check_positive("cv", self.cv)

    @property
    def mean_s(self) -> float:
        return self.mean

    @property
    def scv(self) -> float:
        return self.cv**2

    def scaled(self, factor):
        return type(self)(self.mean * factor, self.cv)


@dataclass(frozen=True)
class LogNormal(_MeanCV):
    """Log-normal duration given by its mean and coefficient of variation (not by mu/sigma)."""

    name = "lognormal"

    @property
    def sigma(self) -> float:
        return math.sqrt(math.log1p(self.cv**2))

    @property
    def mu(self) -> float:
        return math.log(self.mean) - 0.5 * self.sigma**2

    def sample(self, rng, size):
        return rng.lognormal(self.mu, self.sigma, size)


@dataclass(frozen=True)
class Gamma(_MeanCV):
    """Gamma duration given by its mean and coefficient of variation (Erlang-k when cv = 1/√k)."""

    name = "gamma"

    def sample(self, rng, size):
        shape = 1.0 / self.cv**2
        return rng.gamma(shape, self.mean / shape, size)


@dataclass(frozen=True)
class Empirical(Distribution):
    """Resamples observed durations (seconds) with replacement — calibration from measurements."""

    samples: tuple = field(repr=False)
    name = "empirical"

    def __post_init__(self):
        values = np.asarray(self.samples, dtype=float)
        if values.ndim != 1 or values.size < 2:
            raise ValueError(
                f"samples: got {values.size} value(s); valid: at least 2 durations in seconds"
            )
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            bad = values[~np.isfinite(values) | (values < 0)][0]
            raise ValueError(f"samples: got {bad!r}; valid: finite durations >= 0 seconds")
        object.__setattr__(self, "samples", tuple(values.tolist()))
        object.__setattr__(self, "_array", values)

    @property
    def mean_s(self) -> float:
        return float(self._array.mean())

    @property
    def scv(self) -> float:
        m = self._array.mean()
        return float(self._array.var() / m**2) if m > 0 else 0.0

    def sample(self, rng, size):
        return rng.choice(self._array, size)

    def scaled(self, factor):
        return Empirical(tuple((self._array * factor).tolist()))


DISTRIBUTIONS: dict[str, type[Distribution]] = {
    "exponential": Exponential,
    "deterministic": Deterministic,
    "lognormal": LogNormal,
    "gamma": Gamma,
    "empirical": Empirical,
}


def make_distribution(name: str, *args: Any, **kwargs: Any) -> Distribution:
    """Build a distribution by name, e.g. ``make_distribution("lognormal", 0.01, cv=1.5)``."""
    try:
        cls = DISTRIBUTIONS[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"distribution: got {name!r}; valid: one of {sorted(DISTRIBUTIONS)}"
        ) from None
    return cls(*args, **kwargs)


def as_distribution(value: Any, parameter: str = "service") -> Distribution:
    """Accept a :class:`Distribution`, a positive number (exponential with that mean, seconds),
    or a ``(name, *args)`` tuple; raise ``ValueError`` naming ``parameter`` otherwise."""
    if isinstance(value, Distribution):
        return value
    if isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)):
        check_positive(parameter, value)
        return Exponential(float(value))
    elif isinstance(value, (tuple, list)) and value and isinstance(value[0], str):
        return make_distribution(value[0], *value[1:])
    raise ValueError(
        f"{parameter}: got {value!r}; valid: a sim.Distribution, a mean in seconds > 0, "
        f"or (name, *args) with name in {sorted(DISTRIBUTIONS)}"
    )


def fit_service_time(samples_ms, family: str = "lognormal") -> Distribution:
    """Fit a service-time distribution (in seconds) to measured latencies in milliseconds.

    The fit is by moments: the result has the sample mean and coefficient of variation.
    ``family`` is ``"lognormal"`` (default), ``"gamma"``, ``"exponential"`` or ``"empirical"``.
    """
    values = np.asarray(samples_ms, dtype=float)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"samples_ms: got {values.size} value(s); valid: at least 2 latencies in ms")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError("samples_ms: got a non-positive or non-finite latency; valid: values > 0 ms")
    seconds = values / 1000.0
    mean = float(seconds.mean())
    cv = float(seconds.std(ddof=1) / mean)
    family = str(family).lower()
    if family == "lognormal":
        return LogNormal(mean, max(cv, 1e-6))
    if family == "gamma":
        return Gamma(mean, max(cv, 1e-6))
    if family == "exponential":
        return Exponential(mean)
    if family == "empirical":
        return Empirical(tuple(seconds.tolist()))
    raise ValueError(
        f"family: got {family!r}; valid: one of ['empirical', 'exponential', 'gamma', 'lognormal']"
    )


class Stream:
    """An endless supply of draws from one distribution, drawn in blocks for speed.

    ``stream.next()`` returns one float; blocks of 8192 are drawn with numpy so that the
    per-event cost inside a SimPy process is a list index, not a numpy call.
    """

    __slots__ = ("_dist", "_rng", "_buf", "_i", "_n")

    def __init__(self, dist: Distribution, rng: np.random.Generator, block: int = _BLOCK):
        self._dist = dist
        self._rng = rng
        self._n = block
        self._buf = dist.sample(rng, block).tolist()
        self._i = 0

    def next(self) -> float:
        i = self._i
        if i == self._n:
            self._buf = self._dist.sample(self._rng, self._n).tolist()
            i = 0
        self._i = i + 1
        return self._buf[i]


class UniformStream:
    """Block-drawn U(0,1) numbers (routing, failure and jitter decisions)."""

    __slots__ = ("_rng", "_buf", "_i", "_n")

    def __init__(self, rng: np.random.Generator, block: int = _BLOCK):
        self._rng = rng
        self._n = block
        self._buf = rng.random(block).tolist()
        self._i = 0

    def next(self) -> float:
        i = self._i
        if i == self._n:
            self._buf = self._rng.random(self._n).tolist()
            i = 0
        self._i = i + 1
        return self._buf[i]

