"""Lesson helpers against theory, plots and widgets on real results."""

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
    downstream_mean = 1000 * theory.mm1_mean_sojourn_s(50, 1000 / 15)
    assert frame.loc["sync", "mean_ms"] == pytest.approx(2 + 2 * 0.3 + downstream_mean, rel=0.15)
    assert frame.loc["async_events", "completion_p99_ms"] > frame.loc["async_events", "p99_ms"]


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


def test_widget_updates_run_without_display():
    from sim import widgets

    out = widgets.latency_update(rate_per_s=8, servers=2, service_ms=200, cv=1.0)
    assert out["utilisation"] == pytest.approx(0.8)
    assert out["p99_ms"] == pytest.approx(out["p99_theory_ms"], rel=0.25)
    res = widgets.resilience_update(error_rate=0.2, attempts=2)
    assert res["success_theory"] == pytest.approx(0.96)
    hpa = widgets.hpa_update(peak_rate_per_s=400)
    assert hpa["peak_replicas"] == hpa["analytic_peak"]
    w = widgets.latency_explorer()
    assert {c.description for c in w.children if hasattr(c, "description")} >= {"req/s", "servers"}
