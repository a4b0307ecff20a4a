"""Reference models the checks score answers against.

Exact queueing results (M/M/1 tandem lines; M/M/c from :mod:`sim.theory`), so a check gives
the same score for the same answer every time. Times are in milliseconds throughout.
"""

from __future__ import annotations

import math

from scipy import stats

from sim import theory

__all__ = [
    "mmc_response_quantile_ms",
    "tandem_mm1_quantile_ms",
]


def mmc_response_quantile_ms(
    q: float, arrival_rate_per_s: float, service_time_ms: float, servers: int
) -> float:
    """The ``q`` quantile of the response time (wait + service) of an FCFS M/M/c queue, in ms.

    :func:`sim.theory.mmc_sojourn_percentile_s` in milliseconds, with ``math.inf`` for an
    unstable queue (utilisation >= 1) instead of an error: an overloaded plan is an answer to
    score, not a mistake of the caller.
    """
    if not 0 < q < 1:
        raise ValueError(f"q={q!r} is invalid; it must be in (0, 1)")
    if service_time_ms <= 0:
        raise ValueError(f"service_time_ms={service_time_ms!r} is invalid; it must be > 0")
    service_rate_per_s = 1000.0 / service_time_ms
    if arrival_rate_per_s >= servers * service_rate_per_s:
        return math.inf
    return 1000.0 * theory.mmc_sojourn_percentile_s(
        arrival_rate_per_s, service_rate_per_s, servers, q
    )


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
