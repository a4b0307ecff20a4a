"""Analytic formulas against independent references, distributions, calibration, bad input."""

import math

import networkx as nx
import numpy as np
import pytest
from scipy import stats

import sim
from sim import theory


def erlang_c_textbook(c, a):
    """Erlang C from its closed form (a different computation from sim's Erlang B recursion)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize("c, a", [(1, 0.5), (2, 1.0), (4, 3.2), (10, 8.0), (30, 27.0)])
def test_erlang_c_matches_the_closed_form(c, a):
    assert theory.erlang_c(c, a) == pytest.approx(erlang_c_textbook(c, a), rel=1e-10)


def test_erlang_c_known_value_and_mm1_special_case():
    assert theory.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert theory.mmc_mean_wait_s(0.6, 1.0, 1) == pytest.approx(theory.mm1_mean_wait_s(0.6, 1.0))
    # P-K with exponential service (scv 1) is M/M/1
    assert theory.pk_mean_wait_s(0.6, 1.0, 1.0) == pytest.approx(theory.mm1_mean_wait_s(0.6, 1.0))
    # M/D/1 waits half as long as M/M/1
    assert theory.pk_mean_wait_s(0.6, 1.0, 0.0) == pytest.approx(theory.mm1_mean_wait_s(0.6, 1.0) / 2)


def test_exponential_percentile_is_scipy_ppf():
    for q in (0.5, 0.9, 0.99, 0.999):
        assert theory.exponential_percentile(4.0, q) == pytest.approx(stats.expon(scale=0.25).ppf(q))


def test_jackson_tandem_is_sum_of_mm1():
    th = theory.jackson_network({"a": (1, 2.0), "b": (1, 3.0)}, {"a": 1.0}, {"a": {"b": 1.0}})
    assert th["mean_response_s"] == pytest.approx(1 / (2 - 1) + 1 / (3 - 1))
    lam = theory.jackson_arrival_rates({"a": 1.0}, {"a": {"a": 0.5}}, ["a"])
    assert lam["a"] == pytest.approx(2.0)  # feedback: 1 / (1 - 0.5)


def test_distributions_have_the_moments_they_claim():
    rng = np.random.default_rng(0)
    for d in (sim.Exponential(0.2), sim.LogNormal(0.2, 1.5), sim.Gamma(0.2, 0.5), sim.Deterministic(0.2)):
        x = d.sample(rng, 400_000)
        assert x.mean() == pytest.approx(d.mean_s, rel=0.01), d
        if d.scv:
            assert x.var() / x.mean() ** 2 == pytest.approx(d.scv, rel=0.06), d
    assert sim.make_distribution("gamma", 1.0, cv=0.5) == sim.Gamma(1.0, 0.5)


def test_fit_service_time_recovers_mean_and_cv_from_milliseconds():
    rng = np.random.default_rng(1)
    true = sim.LogNormal(0.012, 0.8)
    samples_ms = true.sample(rng, 50_000) * 1000
    fitted = sim.fit_service_time(samples_ms)
    assert isinstance(fitted, sim.LogNormal)
    assert fitted.mean_s == pytest.approx(0.012, rel=0.02)
    assert fitted.cv == pytest.approx(0.8, rel=0.05)
    emp = sim.fit_service_time(samples_ms[:1000], family="empirical")
    assert emp.mean_s == pytest.approx(samples_ms[:1000].mean() / 1000)


@pytest.mark.parametrize(
    "call, parameter, value",
    [
        (lambda: sim.QueueScenario(arrival_rate_per_s=-1.0), "arrival_rate_per_s", "-1.0"),
        (lambda: sim.Exponential.from_rate(-2.0), "rate_per_s", "-2.0"),
        (lambda: theory.mm1_mean_wait_s(1.2, 1.0), "utilisation", "1.2"),
        (lambda: theory.mmc_mean_wait_s(4.0, 1.0, 4), "utilisation", "1.0"),
        (lambda: theory.pk_mean_wait_s(2.0, 0.5, 1.0), "utilisation", "1.0"),
        (lambda: sim.make_distribution("pareto", 1.0), "distribution", "'pareto'"),
        (lambda: sim.LogNormal(0.01, cv=-1), "cv", "-1"),
        (lambda: sim.QueueScenario(0.5, servers=0), "servers", "0"),
        (lambda: sim.fit_service_time([5.0, -1.0]), "samples_ms", "non-positive"),
        (lambda: theory.retry_success_probability(1.5, 3), "failure_probability", "1.5"),
        (lambda: sim.NetworkScenario((sim.Station("a", 1.0),), {"a": 1.0}, {"a": {"b": 0.5}}), "routing", "'b'"),
        (lambda: sim.NetworkScenario((sim.Station("a", 1.0),), {"a": 1.0}, {"a": {"a": 1.0}}), "routing", "no exit"),
        (lambda: sim.CallGraph(nx.Graph()), "graph", "Graph"),
        (lambda: sim.run("M/M/1"), "scenario", "str"),
    ],
)
def test_bad_input_names_parameter_value_and_range(call, parameter, value):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert message.startswith(parameter), message
    assert value in message, message
    assert "valid:" in message, message
