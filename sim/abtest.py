"""A/B tests on two proportions: how many users a test needs, and what peeking costs.

* :func:`sample_size_two_proportions` — users per arm for a two-sided (or one-sided) z-test of
  ``p_a`` against ``p_b`` at level ``alpha`` with ``power``:
  ``n = (z_{1−α/2}·√(2·p̄(1−p̄)) + z_{1−β}·√(p_a(1−p_a) + p_b(1−p_b)))² / (p_a − p_b)²``
  (Fleiss, *Statistical Methods for Rates and Proportions*, the formula without continuity
  correction).
* :func:`simulate_ab` — seeded tests with Binomial arms, analysed by the pooled two-proportion
  z-test at ``looks`` equally spaced interim analyses, stopping at the first significant one:
  with one look the false-positive rate of an A/A test is α and the power of an A/B test is the
  one the sample size was computed for; with more looks ("peeking") the false-positive rate grows
  — :func:`peeking_false_positive_rate` gives its exact large-sample value (the z statistics at
  looks t_i, t_j are jointly normal with correlation √(t_i / t_j); Armitage, McPherson & Rowe 1969:
  5 looks at α 0.05 give 0.142).
* :func:`cohort` — a sticky assignment: a user id always lands in the same arm (a hash of the id
  and a salt, as header- or cookie-based A/B routing keeps a user on one version).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from scipy import stats

from ._validate import check_fraction, check_int, check_positive

__all__ = ["sample_size_two_proportions", "required_sample_size", "simulate_ab", "simulate_ab_test",
           "peeking_false_positive_rate", "cohort"]


def _z(q: float) -> float:
    return float(stats.norm.ppf(q))


def _check_p(name: str, p: float) -> float:
    check_fraction(name, p)
    if not 0 < p < 1:
        raise ValueError(f"{name}: got {p!r}; valid: a proportion in (0, 1)")
    return float(p)


def sample_size_two_proportions(p_a: float, p_b: float, alpha: float = 0.05, power: float = 0.8,
                                two_sided: bool = True) -> int:
    """Users per arm (rounded up) to detect ``p_a`` vs ``p_b``; see the module docs."""
    p_a, p_b = _check_p("p_a", p_a), _check_p("p_b", p_b)
    if p_a == p_b:
        raise ValueError(f"p_b: got {p_b!r} equal to p_a; valid: a different proportion")
    alpha, power = _check_p("alpha", alpha), _check_p("power", power)
    z_a = _z(1 - alpha / 2) if two_sided else _z(1 - alpha)
    z_b = _z(power)
    p_bar = (p_a + p_b) / 2
    n = (z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))) ** 2 \
        / (p_a - p_b) ** 2
    return int(math.ceil(n))


def simulate_ab(p_a: float, p_b: float, n_per_arm: int, looks: int = 1, alpha: float = 0.05,
                runs: int = 4000, seed: int = 0) -> dict:
    """``runs`` seeded tests of ``n_per_arm`` users per arm, z-tested (two-sided, pooled) after
    every ``n_per_arm / looks`` users per arm; a test stops at its first significant look.
    Returns the share of tests declared significant (the false-positive rate when p_a = p_b, the
    power otherwise) with its Wilson interval, and the mean users per arm spent."""
    p_a, p_b = _check_p("p_a", p_a), _check_p("p_b", p_b)
    check_int("n_per_arm", n_per_arm, 2)
    check_int("looks", looks)
    if looks > n_per_arm:
        raise ValueError(f"looks: got {looks}; valid: 1 .. n_per_arm ({n_per_arm})")
    alpha = _check_p("alpha", alpha)
    check_int("runs", runs)
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, n_per_arm, looks + 1).round().astype(int)
    sizes = np.diff(edges)
    xa = np.cumsum(rng.binomial(sizes, p_a, size=(runs, looks)), axis=1)
    xb = np.cumsum(rng.binomial(sizes, p_b, size=(runs, looks)), axis=1)
    n = edges[1:].astype(float)
    pooled = (xa + xb) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * 2 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (xb / n - xa / n) / se, 0.0)
    crit = _z(1 - alpha / 2)
    significant = np.abs(z) > crit
    any_sig = significant.any(axis=1)
    first = np.where(any_sig, significant.argmax(axis=1), looks - 1)
    from .mesh import wilson_interval

    low, high = wilson_interval(int(any_sig.sum()), runs)
    return {"significant": float(any_sig.mean()), "low": low, "high": high, "runs": runs, "looks": looks,
            "mean_users_per_arm": float(n[first].mean())}


def peeking_false_positive_rate(looks: int, alpha: float = 0.05) -> float:
    """Large-sample false-positive rate of a two-sided z-test at level ``alpha`` repeated at
    ``looks`` equally spaced analyses (stop at the first significant one): 1 − P(|Z_i| ≤ z for all
    i), Z jointly normal with corr(Z_i, Z_j) = √(i / j), i ≤ j."""
    check_int("looks", looks)
    if looks > 10:
        raise ValueError(f"looks: got {looks}; valid: 1 .. 10")
    alpha = _check_p("alpha", alpha)
    crit = _z(1 - alpha / 2)
    if looks == 1:
        return alpha
    idx = np.arange(1, looks + 1, dtype=float)
    cov = np.sqrt(np.minimum.outer(idx, idx) / np.maximum.outer(idx, idx))
    lower = np.full(looks, -crit)
    upper = np.full(looks, crit)
    inside = float(stats.multivariate_normal(mean=np.zeros(looks), cov=cov).cdf(upper, lower_limit=lower))
    return 1.0 - inside


def cohort(user_id: str, percent_b: float, salt: str = "ab") -> str:
    """``"b"`` for ``percent_b`` % of user ids, ``"a"`` for the rest; the same id always gets the
    same arm (SHA-256 of salt and id)."""
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user_id: got {user_id!r}; valid: a non-empty string")
    if not 0 <= percent_b <= 100:
        raise ValueError(f"percent_b: got {percent_b!r}; valid: a percentage in [0, 100]")
    h = int.from_bytes(hashlib.sha256(f"{salt}:{user_id}".encode()).digest()[:8], "big") / 2**64
    return "b" if h * 100 < percent_b else "a"


required_sample_size = sample_size_two_proportions


def simulate_ab_test(p_a: float, p_b: float, users_per_s: float, duration_s: float,
                     peeking_every_s: float | None = None, alpha: float = 0.05, runs: int = 4000,
                     seed: int = 0) -> dict:
    """:func:`simulate_ab` in wall-clock terms: ``users_per_s`` users split evenly over the two arms
    for ``duration_s``, analysed every ``peeking_every_s`` (``None``: once, at the end)."""
    check_positive("users_per_s", users_per_s)
    check_positive("duration_s", duration_s)
    looks = 1
    if peeking_every_s is not None:
        check_positive("peeking_every_s", peeking_every_s)
        looks = max(1, int(duration_s // peeking_every_s))
    n = int(users_per_s * duration_s / 2)
    return simulate_ab(p_a, p_b, n, looks=min(looks, n), alpha=alpha, runs=runs, seed=seed)
