"""The reference models the checks score against, checked against theory and SimPy runs."""

from __future__ import annotations

import math

import pytest

import sim
from grading.models import mmc_response_quantile_ms, tandem_mm1_quantile_ms
from sim import Exponential, NetworkScenario, QueueScenario, Station


def test_mmc_quantile_with_one_server_is_the_mm1_exponential_tail():
    # M/M/1 sojourn ~ Exp(mu - lambda): p99 = ln(100) / (mu - lambda)
    assert mmc_response_quantile_ms(0.99, 60, 10, 1) == pytest.approx(
        1000 * math.log(100) / (100 - 60), rel=1e-9)
    assert mmc_response_quantile_ms(0.5, 60, 10, 1) == pytest.approx(
        1000 * sim.theory.mm1_sojourn_percentile_s(60, 100, 0.5), rel=1e-9)


def test_mmc_quantile_with_no_load_is_the_service_time_quantile():
    assert mmc_response_quantile_ms(0.99, 1e-9, 30, 4) == pytest.approx(30 * math.log(100),
                                                                         rel=1e-6)


@pytest.mark.parametrize("rate_per_s, service_ms, servers", [(30, 30, 2), (70, 40, 4)])
def test_mmc_quantile_matches_a_simpy_run(rate_per_s, service_ms, servers):
    predicted = mmc_response_quantile_ms(0.99, rate_per_s, service_ms, servers)
    result = sim.run(QueueScenario(arrival_rate_per_s=rate_per_s,
                                   service=Exponential(service_ms / 1000), servers=servers),
                     seed=7)
    p99 = result.p99_response_s  # an estimate with a 95% batch-means interval
    assert 1000 * p99.low * 0.97 <= predicted <= 1000 * p99.high * 1.03


def test_tandem_quantile_matches_a_simpy_network():
    stations = tuple(Station(f"s{i}", Exponential(0.008)) for i in range(4))
    routing = {f"s{i}": {f"s{i + 1}": 1.0} for i in range(3)}
    result = sim.run(NetworkScenario(stations, {"s0": 50.0}, routing), seed=5)
    predicted = tandem_mm1_quantile_ms(0.99, 50, 8, 4)
    assert 1000 * result.p99_response_s.value == pytest.approx(predicted, rel=0.06)
    assert tandem_mm1_quantile_ms(0.99, 50, 8, 4, 2.0) == pytest.approx(predicted + 8.0)


def test_unstable_queues_have_no_finite_quantile():
    assert math.isinf(mmc_response_quantile_ms(0.99, 200, 10, 2))
    assert math.isinf(tandem_mm1_quantile_ms(0.99, 125, 8, 3))


@pytest.mark.parametrize("call, name", [
    (lambda: mmc_response_quantile_ms(1.0, 1, 10, 1), "q=1.0"),
    (lambda: mmc_response_quantile_ms(0.9, 1, 0, 1), "service_time_ms=0"),
    (lambda: tandem_mm1_quantile_ms(0.9, 1, 10, 0), "stations=0"),
])
def test_bad_parameters_are_named(call, name):
    with pytest.raises(ValueError, match=name):
        call()
