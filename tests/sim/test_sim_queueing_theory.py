"""Stations and networks against queueing theory: M/M/1, M/M/c, M/G/1, Jackson, Little's law.

Rule for every stochastic check (10 fixed seeds): the mean over seeds is within 1 % of theory and
the 95 % batch-means interval covers the analytic value in at least 9 of the 10 runs.
"""

import numpy as np
import pytest

import sim
from sim import theory
from sim_checks import SEEDS, check_against_theory

LAM, MU = 0.6, 1.0


@pytest.fixture(scope="module")
def mm1_runs():
    sc = sim.QueueScenario(LAM, sim.Exponential(1 / MU), servers=1, customers=40_000)
    return [sim.run(sc, seed=s).station for s in SEEDS]


def test_mm1_mean_sojourn_and_wait(mm1_runs):
    check_against_theory([r.mean_sojourn_s for r in mm1_runs], theory.mm1_mean_sojourn_s(LAM, MU), label="M/M/1 W")
    check_against_theory([r.mean_wait_s for r in mm1_runs], theory.mm1_mean_wait_s(LAM, MU), label="M/M/1 Wq")


@pytest.mark.parametrize("q, attr", [(0.50, "p50_sojourn_s"), (0.99, "p99_sojourn_s")])
def test_mm1_sojourn_percentiles_follow_the_exponential_law(mm1_runs, q, attr):
    # the FIFO M/M/1 sojourn time is exponential with rate mu - lambda; the quantile comes from scipy
    from scipy import stats

    truth = stats.expon(scale=1 / (MU - LAM)).ppf(q)
    assert truth == pytest.approx(theory.mm1_sojourn_percentile_s(LAM, MU, q))
    check_against_theory([getattr(r, attr) for r in mm1_runs], truth, label=f"M/M/1 {attr}")


def test_mm1_utilisation_matches_rho(mm1_runs):
    rho = np.mean([r.utilisation for r in mm1_runs])
    assert rho == pytest.approx(LAM / MU, rel=0.01)


@pytest.mark.slow
def test_mmc_erlang_c_wait_probability_and_mean_wait():
    lam, mu, c = 2.4, 1.0, 4  # utilisation 0.6
    runs = [sim.run(sim.QueueScenario(lam, sim.Exponential(1 / mu), c, customers=80_000), seed=s).station
            for s in SEEDS]
    check_against_theory([r.wait_probability for r in runs], theory.mmc_wait_probability(lam, mu, c), label="Erlang C")
    check_against_theory([r.mean_wait_s for r in runs], theory.mmc_mean_wait_s(lam, mu, c), label="M/M/c Wq")


def test_md1_pollaczek_khinchine():
    lam = 0.6
    sc = sim.QueueScenario(lam, sim.Deterministic(1.0), customers=40_000)
    runs = [sim.run(sc, seed=s).station for s in SEEDS]
    check_against_theory([r.mean_wait_s for r in runs], theory.pk_mean_wait_s(lam, 1.0, 0.0), label="M/D/1 Wq")


@pytest.mark.slow
def test_m_lognormal_1_pollaczek_khinchine():
    lam, cv = 0.5, 1.0
    sc = sim.QueueScenario(lam, sim.LogNormal(1.0, cv), customers=80_000)
    runs = [sim.run(sc, seed=s).station for s in SEEDS]
    check_against_theory([r.mean_wait_s for r in runs], theory.pk_mean_wait_s(lam, 1.0, cv**2), label="M/LN/1 Wq")


def jackson_scenario(customers):
    stations = (
        sim.Station("gateway", sim.Exponential(1 / 3.0), servers=1),
        sim.Station("catalog", sim.Exponential(1 / 1.0), servers=2),
        sim.Station("cart", sim.Exponential(1 / 1.5), servers=1),
        sim.Station("checkout", sim.Exponential(1 / 1.0), servers=1),
        sim.Station("payment", sim.Exponential(1 / 0.8), servers=1),
        sim.Station("search", sim.Exponential(1 / 2.0), servers=1),
    )
    routing = {
        "gateway": {"catalog": 0.5, "search": 0.3, "cart": 0.1},
        "search": {"catalog": 0.6},
        "catalog": {"cart": 0.4, "gateway": 0.1},
        "cart": {"checkout": 0.6},
        "checkout": {"payment": 0.9},
        "payment": {"checkout": 0.1},
    }
    return sim.NetworkScenario(stations, {"gateway": 1.5, "search": 0.2}, routing, customers=customers)


@pytest.fixture(scope="module")
def jackson_runs():
    sc = jackson_scenario(30_000)
    return sc, [sim.run(sc, seed=s) for s in SEEDS]


def test_jackson_network_traffic_equations_are_moderate():
    util = jackson_scenario(100).utilisations()
    assert all(0.3 < u < 0.8 for u in util.values()), util
    # traffic equations by hand for one station: gateway gets 1.5 + 0.1 * catalog
    lam = jackson_scenario(100).arrival_rates()
    assert lam["gateway"] == pytest.approx(1.5 + 0.1 * lam["catalog"])


def test_jackson_network_per_station_and_end_to_end(jackson_runs):
    sc, runs = jackson_runs
    th = sc.theory()
    for name, expected in th["stations"].items():
        check_against_theory([r[name].mean_sojourn_s for r in runs], expected["mean_sojourn_s"],
                             label=f"Jackson {name} W")
    check_against_theory([r.mean_response_s for r in runs], th["mean_response_s"], label="Jackson response")
    for name, expected in th["stations"].items():
        measured = np.mean([r[name].arrival_rate_per_s for r in runs])
        assert measured == pytest.approx(expected["arrival_rate_per_s"], rel=0.01), name


def _across_seeds_covers(values, truth, *, max_rel_error, label):
    """The mean over seeds is within `max_rel_error` of theory and its 99 % t-interval (from the
    spread between seeds, which are independent runs) covers the theoretical value."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    mean, se = values.mean(), values.std(ddof=1) / np.sqrt(len(values))
    half = stats.t.ppf(0.995, len(values) - 1) * se
    detail = f"{label}: theory {truth:.6g}, mean of {len(values)} seeds {mean:.6g} +- {half:.3g}"
    assert abs(mean - truth) <= max_rel_error * abs(truth), detail
    assert abs(mean - truth) <= half, detail


def test_littles_law_on_every_station(jackson_runs, mm1_runs):
    """L, the time-average number present (an area under the sample path, not lambda * W from the
    same arrays), against theory: rho / (1 - rho) = 1.5 for the M/M/1 and lambda_i * W_i of the
    product-form solution for each Jackson station."""
    rho = LAM / MU
    assert rho / (1 - rho) == pytest.approx(1.5)
    _across_seeds_covers([st.mean_number for st in mm1_runs], 1.5, max_rel_error=0.03, label="M/M/1 L")
    sc, runs = jackson_runs
    th = sc.theory()["stations"]
    for name, expected in th.items():
        truth = expected["arrival_rate_per_s"] * expected["mean_sojourn_s"]
        assert expected["mean_number"] == pytest.approx(truth)
        _across_seeds_covers([r[name].mean_number for r in runs], truth, max_rel_error=0.03,
                             label=f"Jackson {name} L")


def test_same_seed_same_numbers_and_different_seed_differs():
    sc = sim.QueueScenario(0.5, sim.LogNormal(1.0, 1.2), servers=2, customers=2_000)
    a, b, c = sim.run(sc, seed=7), sim.run(sc, seed=7), sim.run(sc, seed=8)
    assert a.to_frame().equals(b.to_frame())
    assert not a.to_frame().equals(c.to_frame())


def test_results_are_data():
    r = sim.run(sim.QueueScenario(0.5, 1.0, customers=2_000), seed=1)
    frame = r.to_frame()
    assert {"mean_wait_s", "mean_wait_s_low", "mean_wait_s_high", "p99_sojourn_s"} <= set(frame.columns)
    e = r.station.p99_sojourn_s
    assert e.low <= e.value <= e.high
    assert r.summary()["p99_ms"] == pytest.approx(r.p99_response_s.value * 1000, abs=1e-3)
