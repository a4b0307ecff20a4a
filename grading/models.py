"""Reference models the checks score answers against.

Exact queueing results where theory has one (M/M/1 tandem lines, M/M/c with Erlang C from
:mod:`sim.theory`), and a seeded Monte Carlo over those exact sojourn-time distributions for
call trees, so a check gives the same score for the same answer every time. Times are in
milliseconds throughout.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from sim.theory import erlang_c

__all__ = [
    "mmc_response_quantile_ms",
    "tandem_mm1_quantile_ms",
]


def mmc_response_quantile_ms(
    q: float, arrival_rate_per_s: float, service_time_ms: float, servers: int
) -> float:
    """The ``q`` quantile of the response time (wait + service) of an FCFS M/M/c queue, in ms.

    Returns ``math.inf`` when the queue is unstable (utilisation >= 1).
    """
    if not 0 < q < 1:
        raise ValueError(f"q={q!r} is invalid; it must be in (0, 1)")
    if service_time_ms <= 0:
        raise ValueError(f"service_time_ms={service_time_ms!r} is invalid; it must be > 0")
    mu = 1000.0 / service_time_ms  # per second
    lam = arrival_rate_per_s
    if lam >= servers * mu:
        return math.inf
    c_wait = erlang_c(servers, lam / mu) if lam > 0 else 0.0
    theta = servers * mu - lam  # rate of the exponential wait, given that one waits

    def tail(t_s: float) -> float:
        no_wait = math.exp(-mu * t_s)
        if abs(theta - mu) < 1e-9 * mu:
            waited = (1 + mu * t_s) * math.exp(-mu * t_s)  # Erlang-2
        else:
            waited = (theta * math.exp(-mu * t_s) - mu * math.exp(-theta * t_s)) / (theta - mu)
        return (1 - c_wait) * no_wait + c_wait * waited - (1 - q)

    hi = 1.0 / min(mu, theta)
    while tail(hi) > 0:
        hi *= 2
    return 1000.0 * optimize.brentq(tail, 0.0, hi, xtol=1e-12)


def tandem_mm1_quantile_ms(
    q: float,
    arrival_rate_per_s: float,
    service_time_ms: float,
    stations: int,
    fixed_delay_ms_per_station: float = 0.0,
) -> float:
    """The ``q`` quantile of the end-to-end time through ``stations`` identical M/M/1 in series.

    A customer's sojourn times at the stations of an M/M/1 tandem line are independent
    exponentials with rate μ − λ (Reich), so the total is Erlang(stations, μ − λ), plus a fixed
    delay per station (network hop). Returns ``math.inf`` when a station is unstable.
    """
    if stations < 1:
        raise ValueError(f"stations={stations!r} is invalid; it must be an integer >= 1")
    mu = 1000.0 / service_time_ms
    if arrival_rate_per_s >= mu:
        return math.inf
    rate = mu - arrival_rate_per_s
    return 1000.0 * stats.gamma.ppf(q, stations, scale=1.0 / rate) + (
        stations * fixed_delay_ms_per_station
    )


def exp_samples_ms(rng: np.random.Generator, mean_ms: float, n: int) -> np.ndarray:
    """``n`` exponential samples with mean ``mean_ms``."""
    return rng.exponential(mean_ms, n)


def mm1_sojourn_samples_ms(
    rng: np.random.Generator, arrival_rate_per_s: float, service_time_ms: float, n: int
) -> np.ndarray:
    """``n`` samples of the M/M/1 sojourn time (exponential with rate μ − λ); inf if unstable."""
    mu = 1000.0 / service_time_ms
    if arrival_rate_per_s >= mu:
        return np.full(n, np.inf)
    return rng.exponential(1000.0 / (mu - arrival_rate_per_s), n)
