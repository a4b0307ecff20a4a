"""Analytic results that the simulations are checked against (and that learners compare with).

Rates are per second and times in seconds. Every formula that needs a stable queue raises
``ValueError`` naming the parameter when the utilisation is not below 1.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ._validate import (
    check_fraction,
    check_int,
    check_nonnegative,
    check_positive,
    check_utilisation,
)

__all__ = [
    "mm1_mean_wait_s",
    "mm1_mean_sojourn_s",
    "mm1_sojourn_percentile_s",
    "exponential_percentile",
    "erlang_c",
    "mmc_wait_probability",
    "mmc_mean_wait_s",
    "mmc_mean_sojourn_s",
    "mmc_sojourn_survival",
    "mmc_sojourn_percentile_s",
    "pk_mean_wait_s",
    "mg1_mean_sojourn_s",
    "jackson_arrival_rates",
    "jackson_network",
    "littles_law_number",
    "hpa_desired_replicas",
    "retry_success_probability",
    "erlang_b",
    "mmck_blocking_probability",
    "run_of_failures_probability",
]


def _rho(arrival_rate_per_s: float, service_rate_per_s: float, servers: int = 1) -> float:
    check_nonnegative("arrival_rate_per_s", arrival_rate_per_s)
    check_positive("service_rate_per_s", service_rate_per_s)
    check_int("servers", servers)
    rho = arrival_rate_per_s / (servers * service_rate_per_s)
    return check_utilisation("utilisation", rho)


def mm1_mean_wait_s(arrival_rate_per_s: float, service_rate_per_s: float) -> float:
    """M/M/1 mean time in queue Wq = ρ / (μ − λ)."""
    rho = _rho(arrival_rate_per_s, service_rate_per_s)
    return rho / (service_rate_per_s - arrival_rate_per_s)


def mm1_mean_sojourn_s(arrival_rate_per_s: float, service_rate_per_s: float) -> float:
    """M/M/1 mean time in system W = 1 / (μ − λ)."""
    _rho(arrival_rate_per_s, service_rate_per_s)
    return 1.0 / (service_rate_per_s - arrival_rate_per_s)


def exponential_percentile(rate_per_s: float, q: float) -> float:
    """The q-quantile of an exponential law with rate ``rate_per_s``: −ln(1 − q) / rate."""
    check_positive("rate_per_s", rate_per_s)
    check_fraction("q", q, closed_high=False)
    return -math.log1p(-q) / rate_per_s


def mm1_sojourn_percentile_s(arrival_rate_per_s: float, service_rate_per_s: float, q: float) -> float:
    """Quantile of the M/M/1 (FIFO) sojourn time, which is exponential with rate μ − λ."""
    _rho(arrival_rate_per_s, service_rate_per_s)
    return exponential_percentile(service_rate_per_s - arrival_rate_per_s, q)


def erlang_c(servers: int, offered_load: float) -> float:
    """Erlang C: probability that an arrival waits in an M/M/c queue with offered load a = λ/μ.

    Computed through the Erlang B recursion, which is numerically stable for large ``servers``.
    """
    check_int("servers", servers)
    check_nonnegative("offered_load", offered_load)
    check_utilisation("utilisation", offered_load / servers)
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load * b / (k + offered_load * b)
    rho = offered_load / servers
    return b / (1.0 - rho + rho * b)


def mmc_wait_probability(arrival_rate_per_s: float, service_rate_per_s: float, servers: int) -> float:
    """P(wait > 0) in M/M/c (Erlang C)."""
    _rho(arrival_rate_per_s, service_rate_per_s, servers)
    return erlang_c(servers, arrival_rate_per_s / service_rate_per_s)


def mmc_mean_wait_s(arrival_rate_per_s: float, service_rate_per_s: float, servers: int) -> float:
    """M/M/c mean time in queue Wq = C(c, a) / (cμ − λ)."""
    p_wait = mmc_wait_probability(arrival_rate_per_s, service_rate_per_s, servers)
    return p_wait / (servers * service_rate_per_s - arrival_rate_per_s)


def mmc_mean_sojourn_s(arrival_rate_per_s: float, service_rate_per_s: float, servers: int) -> float:
    """M/M/c mean time in system W = Wq + 1/μ."""
    return mmc_mean_wait_s(arrival_rate_per_s, service_rate_per_s, servers) + 1.0 / service_rate_per_s


def mmc_sojourn_survival(t_s: float, arrival_rate_per_s: float, service_rate_per_s: float, servers: int) -> float:
    """P(T > t) for the FIFO M/M/c sojourn time T = Wq + S (Wq is 0 or exponential, S exponential)."""
    p_wait = mmc_wait_probability(arrival_rate_per_s, service_rate_per_s, servers)
    mu = service_rate_per_s
    theta = servers * mu - arrival_rate_per_s
    no_wait = math.exp(-mu * t_s)
    if abs(theta - mu) < 1e-12 * mu:
        waited = (1.0 + mu * t_s) * math.exp(-mu * t_s)  # Erlang-2 tail
    else:
        waited = (theta * math.exp(-mu * t_s) - mu * math.exp(-theta * t_s)) / (theta - mu)
    return (1.0 - p_wait) * no_wait + p_wait * waited


def mmc_sojourn_percentile_s(arrival_rate_per_s: float, service_rate_per_s: float, servers: int, q: float) -> float:
    """The q-quantile of the FIFO M/M/c sojourn time (solved numerically from the survival function)."""
    from scipy.optimize import brentq

    check_fraction("q", q, closed_high=False)
    _rho(arrival_rate_per_s, service_rate_per_s, servers)
    target = 1.0 - q
    hi = 1.0 / service_rate_per_s
    while mmc_sojourn_survival(hi, arrival_rate_per_s, service_rate_per_s, servers) > target:
        hi *= 2.0
    return brentq(lambda t: mmc_sojourn_survival(t, arrival_rate_per_s, service_rate_per_s, servers) - target,
                  0.0, hi, xtol=1e-12, rtol=1e-10)


def pk_mean_wait_s(arrival_rate_per_s: float, mean_service_s: float, service_scv: float) -> float:
    """Pollaczek–Khinchine M/G/1 mean wait Wq = λ E[S²] / (2 (1 − ρ)), E[S²] = m²(1 + scv)."""
    check_nonnegative("arrival_rate_per_s", arrival_rate_per_s)
    check_positive("mean_service_s", mean_service_s)
    check_nonnegative("service_scv", service_scv)
    rho = check_utilisation("utilisation", arrival_rate_per_s * mean_service_s)
    second_moment = mean_service_s**2 * (1.0 + service_scv)
    return arrival_rate_per_s * second_moment / (2.0 * (1.0 - rho))


def mg1_mean_sojourn_s(arrival_rate_per_s: float, mean_service_s: float, service_scv: float) -> float:
    """M/G/1 mean time in system W = Wq + E[S]."""
    return pk_mean_wait_s(arrival_rate_per_s, mean_service_s, service_scv) + mean_service_s


def mg1_ps_mean_sojourn_s(arrival_rate_per_s: float, mean_service_s: float) -> float:
    """M/G/1 processor sharing mean time in system E[S] / (1 − ρ), whatever the service-time
    distribution (PS is insensitive); a job of size x stays x / (1 − ρ) on average."""
    rho = check_utilisation("utilisation", arrival_rate_per_s * mean_service_s)
    return mean_service_s / (1.0 - rho)


def _routing_matrix(names: Sequence[str], routing: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    p = np.zeros((len(names), len(names)))
    for src, row in (routing or {}).items():
        if src not in index:
            raise ValueError(f"routing: got source {src!r}; valid: one of {list(names)}")
        for dst, prob in row.items():
            if dst not in index:
                raise ValueError(f"routing[{src!r}]: got target {dst!r}; valid: one of {list(names)}")
            p[index[src], index[dst]] = check_fraction(f"routing[{src!r}][{dst!r}]", prob)
        total = p[index[src]].sum()
        if total > 1 + 1e-9:
            raise ValueError(
                f"routing[{src!r}]: got probabilities summing to {total:.6g}; valid: a sum <= 1 "
                "(the rest leaves the network)"
            )
    return p


def jackson_arrival_rates(
    external_rate_per_s: Mapping[str, float], routing: Mapping[str, Mapping[str, float]], names=None
) -> dict[str, float]:
    """Solve the traffic equations λ = γ + Pᵀλ of an open network; returns λ per station."""
    names = list(names) if names is not None else sorted(set(external_rate_per_s) | set(routing))
    p = _routing_matrix(names, routing)
    gamma = np.zeros(len(names))
    for n, r in external_rate_per_s.items():
        if n not in names:
            raise ValueError(f"external_rate_per_s: got station {n!r}; valid: one of {names}")
        gamma[names.index(n)] = check_nonnegative(f"external_rate_per_s[{n!r}]", r)
    try:
        lam = np.linalg.solve(np.eye(len(names)) - p.T, gamma)
    except np.linalg.LinAlgError:
        raise ValueError("routing: got a closed loop with no exit; valid: every customer can leave") from None
    if np.any(lam < -1e-12) or not np.all(np.isfinite(lam)):
        raise ValueError("routing: got a closed loop with no exit; valid: every customer can leave")
    return {n: float(x) for n, x in zip(names, lam)}


def jackson_network(
    stations: Mapping[str, tuple[int, float]],
    external_rate_per_s: Mapping[str, float],
    routing: Mapping[str, Mapping[str, float]],
) -> dict:
    """Product-form results of an open Jackson network of M/M/c stations.

    ``stations`` maps a name to ``(servers, service_rate_per_s)``. Returns a dict with per-station
    ``arrival_rate_per_s``, ``utilisation``, ``mean_wait_s``, ``mean_sojourn_s``, ``mean_number``
    and the network's ``mean_response_s`` (Little's law over the whole network).
    """
    names = list(stations)
    lam = jackson_arrival_rates(external_rate_per_s, routing, names)
    per_station = {}
    for n in names:
        c, mu = stations[n]
        rho = lam[n] / (c * mu)
        if rho >= 1:
            raise ValueError(
                f"utilisation[{n!r}]: got {rho:.6g}; valid: a utilisation in [0, 1) (the queue is unstable otherwise)"
            )
        wq = mmc_mean_wait_s(lam[n], mu, c) if lam[n] > 0 else 0.0
        w = wq + 1.0 / mu
        per_station[n] = {
            "arrival_rate_per_s": lam[n],
            "utilisation": rho,
            "mean_wait_s": wq,
            "mean_sojourn_s": w,
            "mean_number": lam[n] * w,
        }
    gamma_total = sum(external_rate_per_s.values())
    total_number = sum(s["mean_number"] for s in per_station.values())
    return {
        "stations": per_station,
        "mean_response_s": total_number / gamma_total,
        "throughput_per_s": gamma_total,
    }


def littles_law_number(arrival_rate_per_s: float, mean_time_s: float) -> float:
    """Little's law L = λ W."""
    return check_nonnegative("arrival_rate_per_s", arrival_rate_per_s) * check_nonnegative(
        "mean_time_s", mean_time_s
    )


def hpa_desired_replicas(
    current_replicas: int,
    current_metric: float,
    target_metric: float,
    tolerance: float = 0.1,
    min_replicas: int = 1,
    max_replicas: int | None = None,
) -> int:
    """The Kubernetes HPA rule: ceil(current × metric / target), unchanged within the tolerance."""
    check_int("current_replicas", current_replicas, 0)
    check_nonnegative("current_metric", current_metric)
    check_positive("target_metric", target_metric)
    check_fraction("tolerance", tolerance)
    ratio = current_metric / target_metric
    if abs(ratio - 1.0) <= tolerance:
        desired = current_replicas
    else:
        desired = math.ceil(current_replicas * ratio - 1e-9)
    desired = max(desired, min_replicas)
    if max_replicas is not None:
        desired = min(desired, max_replicas)
    return desired


def retry_success_probability(failure_probability: float, attempts: int) -> float:
    """P(success within ``attempts`` independent tries) = 1 − p^k."""
    check_fraction("failure_probability", failure_probability)
    check_int("attempts", attempts)
    return 1.0 - failure_probability**attempts


def erlang_b(servers: int, offered_load: float) -> float:
    """Erlang B: probability that an arrival finds all ``servers`` busy in an M/M/c/c loss system
    (no queue) with offered load a = λ/μ — the overflow share of a connection pool without
    pending requests. Insensitive to the service-time law (M/G/c/c). Stable recursion
    B(k) = a·B(k−1) / (k + a·B(k−1))."""
    check_int("servers", servers)
    check_nonnegative("offered_load", offered_load)
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load * b / (k + offered_load * b)
    return b


def mmck_blocking_probability(arrival_rate_per_s: float, service_rate_per_s: float, servers: int,
                              capacity: int) -> float:
    """M/M/c/K: the share of arrivals refused because ``capacity`` K requests (c in service, K − c
    waiting) are already there — a connection pool of c connections and K − c pending requests.
    p_n ∝ a^n / n! for n ≤ c and a^c/c! · (a/c)^(n−c) above; blocking = p_K (PASTA)."""
    check_nonnegative("arrival_rate_per_s", arrival_rate_per_s)
    check_positive("service_rate_per_s", service_rate_per_s)
    check_int("servers", servers)
    check_int("capacity", capacity, servers)
    a = arrival_rate_per_s / service_rate_per_s
    weights = [1.0]
    for n in range(1, capacity + 1):
        weights.append(weights[-1] * a / min(n, servers))
    return weights[-1] / sum(weights)


def run_of_failures_probability(failure_probability: float, trials: int, run: int) -> float:
    """Probability that ``trials`` independent Bernoulli(p) outcomes contain ``run`` failures in a
    row (at least once): what a consecutive-errors detector needs to fire. Exact, by the
    distribution of the current run length."""
    p = check_fraction("failure_probability", failure_probability)
    check_int("trials", trials, 0)
    check_int("run", run)
    state = np.zeros(run)  # state[j]: current run j < run, no detection yet
    state[0] = 1.0
    hit = 0.0
    for _ in range(trials):
        new = np.zeros(run)
        new[0] = state.sum() * (1.0 - p)
        new[1:] = state[:-1] * p
        hit += state[-1] * p
        state = new
    return float(hit)
