"""Lesson helpers against theory, plots and widgets on real results."""

import numpy as np
import pytest

import sim
from sim import theory
from sim_checks import SEEDS, check_against_theory


def test_saga_outcome_rates_match_the_product_of_probabilities():
    steps = {"reserve": 0.05, "authorise": 0.10, "confirm": 0.02}
    q = 0.05
    frames = [sim.saga_outcomes(steps, q, n_sagas=20_000, seed=s) for s in SEEDS]
    p_complete = 0.95 * 0.90 * 0.98
    p_aborted = 0.05  # the first step fails: nothing to undo
    # fails at step k after k-1 successes and then k-1 compensations succeed
    p_compensated = 0.95 * 0.10 * 0.95 + 0.95 * 0.90 * 0.02 * 0.95**2
    assert frames[0].loc["completed", "analytic"] == pytest.approx(p_complete)
    assert frames[0].loc["aborted", "analytic"] == pytest.approx(p_aborted)
    assert frames[0].loc["compensated", "analytic"] == pytest.approx(p_compensated)
    for outcome, truth in (("completed", p_complete), ("aborted", p_aborted), ("compensated", p_compensated)):
        est = [sim.Estimate(f.loc[outcome, "rate"], f.loc[outcome, "rate_low"], f.loc[outcome, "rate_high"])
               for f in frames]
        check_against_theory(est, truth, label=f"saga {outcome}")
    for f in frames:
        assert f["rate"].sum() == pytest.approx(1.0)


def test_mmc_sojourn_percentile_formula_against_simulation():
    lam, mu, c = 2.4, 1.0, 4
    assert theory.mmc_sojourn_percentile_s(0.6, 1.0, 1, 0.99) == pytest.approx(
        theory.mm1_sojourn_percentile_s(0.6, 1.0, 0.99))
    truth = theory.mmc_sojourn_percentile_s(lam, mu, c, 0.9)
    runs = [sim.run(sim.QueueScenario(lam, sim.Exponential(1 / mu), c, customers=30_000), seed=s).station
            for s in SEEDS]
    check_against_theory([r.p90_sojourn_s for r in runs], truth, label="M/M/4 p90 sojourn")


def test_monolith_vs_microservices_capacity_and_hops():
    frame = sim.monolith_vs_microservices(rate_per_s=100, cores=8, hop_delay_ms=1.0, n_requests=5_000, seed=1)
    work = 2 + 3 + 4 + 3
    assert frame.loc["monolith", "capacity_per_s"] == pytest.approx(8 / (work / 1000))
    # the chain pays 3 hops x 2 ways x 1 ms plus 0.2 ms serialisation per remote call at least
    assert frame.loc["microservices", "p50_ms"] > frame.loc["monolith", "p50_ms"] + 3 * 2 * 1.0 * 0.9
    assert frame.loc["microservices", "throughput_per_core"] < frame.loc["monolith", "throughput_per_core"]


def test_sync_vs_async_slow_downstream():
    frame = sim.sync_vs_async(rate_per_s=50, downstream_ms=15, n_requests=5_000, seed=2)
    # the downstream is an M/M/1 at rho = 0.75: sync users wait for it, async users do not
    assert frame.loc["async_events", "p99_ms"] < frame.loc["sync", "p99_ms"] / 5
    # sync mean = API (2 ms, 64 servers: no queue) + a 0.3 ms hop each way + the M/M/1 sojourn:
    # 2 + 0.6 + 1000 / (66.67 - 50) = 62.6 ms. At rho = 0.75 one seed of 5 000 requests is noisy
    # (its 95 % interval is about 20 ms wide), so here the interval must cover the theory and
    # test_sync_mean_accounts_every_hop_and_the_downstream checks the accounting to 3 %.
    downstream_mean = 1000 * theory.mm1_mean_sojourn_s(50, 1000 / 15)
    assert downstream_mean == pytest.approx(60.0)
    sync = frame.loc["sync"]
    assert sync["mean_ms_low"] <= 2 + 2 * 0.3 + downstream_mean <= sync["mean_ms_high"], sync.to_dict()
    assert frame.loc["async_events", "completion_p99_ms"] > frame.loc["async_events", "p99_ms"]


def test_sync_mean_accounts_every_hop_and_the_downstream():
    """With a fast downstream (rho = 0.05) the queueing noise is small, so the mean tells apart
    what a model counts: 2 ms API + 0.3 ms each way + 1000 / (1000 - 50) ms downstream sojourn
    = 3.6526 ms (counting the hop once would give 3.3526 ms, dropping the API 1.6526 ms)."""
    frame = sim.sync_vs_async(rate_per_s=50, downstream_ms=1, n_requests=20_000, seed=3)
    truth = 2 + 2 * 0.3 + 1000 / (1000 - 50)
    assert truth == pytest.approx(3.652632, abs=1e-6)
    sync = frame.loc["sync"]
    assert sync["mean_ms"] == pytest.approx(truth, rel=0.03), sync.to_dict()
    assert sync["mean_ms_low"] <= truth <= sync["mean_ms_high"], sync.to_dict()


def test_capacity_plan_meets_the_slo_at_minimum_replicas():
    plan = sim.capacity_plan(100, sim.Exponential(0.02), slo_p99_ms=100)
    best = plan[plan.best].iloc[0]
    c = int(best.replicas)
    assert theory.mmc_sojourn_percentile_s(100, 50, c, 0.99) * 1000 <= 100
    assert theory.mmc_sojourn_percentile_s(100, 50, c - 1, 0.99) * 1000 > 100 or c - 1 <= 2
    assert best.cost_usd_per_h == plan.cost_usd_per_h.min()
    with pytest.raises(ValueError, match="slo_p99_ms"):
        sim.capacity_plan(100, sim.Exponential(0.02), slo_p99_ms=10)


def test_sweep_and_plots_take_results():
    import matplotlib.pyplot as plt
    from sim import plots

    frame = sim.sweep(lambda r: sim.QueueScenario(r, sim.Exponential(0.1), customers=2_000), [2, 5, 8], seed=0)
    assert list(frame.rate_per_s) == [2, 5, 8]
    assert (frame.p99_ms.diff().dropna() > 0).all()
    ax = plots.plot_percentiles_vs_load(frame)
    assert "p99 grows" in ax.get_title()
    assert len(ax.collections) == 2  # two confidence bands
    r = sim.run(sim.QueueScenario(5, sim.Exponential(0.1), customers=2_000), seed=0)
    ax = plots.plot_latency_cdf({"M/M/1": r, "raw": r.response_times_s * 1000})
    assert ax.get_xlabel() == "latency (ms)"
    plan = sim.capacity_plan(100, sim.Exponential(0.02), slo_p99_ms=100)
    ax = plots.plot_cost_slo_frontier(plan, slo_p99_ms=100, label="instance_type")
    assert "cheapest plan" in ax.get_title()
    plt.close("all")


def _mm2_quantile_ms(lam: float = 8.0, mu: float = 5.0, q: float = 0.99) -> float:
    """Sojourn quantile (p99 by default) of the FIFO M/M/2, from first principles (not sim.theory): with probability
    1 - C the request is served at once (Exp(mu)), else it waits Exp(2 mu - lam) first, where
    C = 2 rho^2 / (1 + rho) is Erlang C for two servers at rho = lam / (2 mu)."""
    import math

    from scipy.optimize import brentq

    rho, a = lam / (2 * mu), 2 * mu - lam
    c = 2 * rho**2 / (1 + rho)

    def survival(t):
        hypo = (a * math.exp(-mu * t) - mu * math.exp(-a * t)) / (a - mu)
        return (1 - c) * math.exp(-mu * t) + c * hypo

    return 1000 * brentq(lambda t: survival(t) - (1 - q), 0, 100)


@pytest.mark.slow
def test_latency_widget_percentiles_against_mm2_theory():
    """The widget's simulated p50 and p99 (10 seeds of 40 000 requests) against the M/M/2 law."""
    import matplotlib.pyplot as plt

    from sim import widgets

    p99 = _mm2_quantile_ms()
    assert p99 == pytest.approx(2387.5, abs=0.1)
    runs = [widgets.latency_update(rate_per_s=8, servers=2, service_ms=200, cv=1.0, customers=40_000, seed=s)
            for s in SEEDS]
    plt.close("all")
    assert all(r["p99_theory_ms"] == pytest.approx(p99, abs=0.05) for r in runs)
    p50_truth = _mm2_quantile_ms(q=0.5)
    p50 = np.mean([r["p50_ms"] for r in runs])
    p99_sim = np.mean([r["p99_ms"] for r in runs])
    assert p50 == pytest.approx(p50_truth, rel=0.03), (p50, p50_truth)
    assert p99_sim == pytest.approx(p99, rel=0.06), (p99_sim, p99)


def test_widget_updates_run_without_display():
    from sim import widgets

    out = widgets.latency_update(rate_per_s=8, servers=2, service_ms=200, cv=1.0)
    assert out["utilisation"] == pytest.approx(0.8)
    assert out["p99_theory_ms"] == pytest.approx(_mm2_quantile_ms(), abs=0.05)   # rounded to 0.1 ms
    res = widgets.resilience_update(error_rate=0.2, attempts=2)
    assert res["success_theory"] == pytest.approx(0.96)
    hpa = widgets.hpa_update(peak_rate_per_s=400)
    assert hpa["peak_replicas"] == hpa["analytic_peak"]
    w = widgets.latency_explorer()
    assert {c.description for c in w.children if hasattr(c, "description")} >= {"req/s", "servers"}
