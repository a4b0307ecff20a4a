"""Day 2's sim additions against closed forms: fixed windows and their boundary burst, Envoy's
connection pool against Erlang B and M/M/c/K, outlier ejection against the run-length law (and
what retries hide), canary detection against a Poisson–Binomial gate, A/B sample size and the
cost of peeking against their formulas, mirror edges against utilisation, sidecar cost against
Istio's published figures."""

import math

import networkx as nx
import numpy as np
import pytest
from scipy import stats

import sim
from sim import abtest, canary, mesh, theory
from sim.ratelimit import (admitted_times, compare_limiters, fixed_window_admitted_fraction,
                           fixed_window_worst_sliding_count, token_bucket_worst_sliding_count,
                           worst_sliding_window_count)


# ----- rate limiting ---------------------------------------------------------------------------------
@pytest.mark.parametrize("multiple", [0.5, 1.0, 2.0, 3.0])
def test_fixed_window_admits_e_min_n_l_under_poisson_load(multiple):
    limit, duration = 10, 2000.0
    rate = multiple * limit
    rng = np.random.default_rng(3)
    arrivals = np.cumsum(rng.exponential(1 / rate, int(rate * duration * 1.1) + 100))
    arrivals = arrivals[arrivals < duration]
    admitted = admitted_times(arrivals, sim.FixedWindow(limit, 1.0)).size
    # per window: E[min(N, L)], N ~ Poisson(λ); sd of the per-window count ≤ sqrt(L)
    expected = fixed_window_admitted_fraction(rate, limit) * rate * duration
    assert admitted == pytest.approx(expected, abs=4 * math.sqrt(limit * duration))
    if multiple >= 2:
        assert fixed_window_admitted_fraction(rate, limit) == pytest.approx(1 / multiple, rel=0.01)


def test_a_burst_at_the_window_boundary_passes_twice_the_limit_in_one_sliding_second():
    limit = 20
    eps = 1e-3
    burst = np.concatenate([np.full(2 * limit + 5, 1.0 - eps), np.full(2 * limit + 5, 1.0 + eps)])
    fw = admitted_times(burst, sim.FixedWindow(limit, 1.0))
    assert worst_sliding_window_count(fw) == fixed_window_worst_sliding_count(limit) == 2 * limit
    # two gateway replicas with local counters: 2 × the limit per window, 4 × in a sliding second
    fw2 = admitted_times(burst, sim.FixedWindow(limit, 1.0, nodes=2))
    assert worst_sliding_window_count(fw2) == fixed_window_worst_sliding_count(limit, nodes=2)
    # a token bucket of burst b, rate r: never more than b + r·W in any window, and a full bucket
    # followed by steady arrivals at r reaches it
    r, b = 20.0, 5
    tb = admitted_times(burst, sim.TokenBucket(r, b))
    assert worst_sliding_window_count(tb) <= token_bucket_worst_sliding_count(r, b)
    steady = np.concatenate([np.full(b, 0.0), np.arange(1, 41) / 40.0])   # 40/s for 1 s after the burst
    tb_steady = admitted_times(steady, sim.TokenBucket(r, b))
    assert worst_sliding_window_count(tb_steady, 1.0 + 1e-6) == pytest.approx(b + r, abs=1)


def test_compare_limiters_table_follows_the_closed_form():
    t = compare_limiters(10, (0.5, 1.0, 1.5, 2.0, 3.0), duration_s=600, seed=1)
    assert list(t.index) == [0.5, 1.0, 1.5, 2.0, 3.0]
    for m, row in t.iterrows():
        sd = math.sqrt(row["fixed_window_admitted"] * (1 - row["fixed_window_admitted"]) / row["offered"])
        assert row["fixed_window_admitted"] == pytest.approx(row["fixed_window_theory"], abs=5 * sd + 0.01), m
        assert row["fixed_window_worst_1s"] <= row["fixed_window_bound_1s"]
        assert row["token_bucket_worst_1s"] <= row["token_bucket_bound_1s"]
    # above the limit both converge on the limit: admitted share ≈ 1 / multiple
    assert t.loc[3.0, "token_bucket_admitted"] == pytest.approx(1 / 3, abs=0.02)


def test_bad_limiter_inputs_are_rejected():
    with pytest.raises(ValueError, match="window_s"):
        sim.FixedWindow(10, 0)
    with pytest.raises(ValueError, match="arrival_times_s"):
        admitted_times([2.0, 1.0], sim.FixedWindow(1))
    with pytest.raises(ValueError, match="bucket"):
        admitted_times([1.0], "kong")


# ----- connection pool -----------------------------------------------------------------------------
def pool_graph(service_s, pool, error_rate=0.0, retry=None):
    g = nx.DiGraph()
    g.add_node("client", service_time=sim.Deterministic(1e-6), servers=10_000)
    g.add_node("backend", service_time=sim.Exponential(service_s), servers=10_000, error_rate=error_rate)
    g.add_edge("client", "backend", connection_pool=pool, retry=retry)
    return sim.CallGraph(g, warmup_fraction=0.0)


def test_pool_without_pending_requests_overflows_as_erlang_b():
    """4 connections, no pending queue, a = λ/μ = 3: a loss system, blocking = Erlang B(4, 3)."""
    n = 40_000
    pool = sim.ConnectionPool(max_connections=4, http1_max_pending_requests=0)
    r = sim.run(pool_graph(0.01, pool), seed=2, rate_per_s=300, n_requests=n)
    blocked = r.edges.loc["client->backend", "pool_overflow"] / n
    b = theory.erlang_b(4, 3.0)
    assert b == pytest.approx(0.2061, abs=1e-4)
    assert blocked == pytest.approx(b, abs=4 * math.sqrt(b * (1 - b) / n) * 2)


def test_pool_with_pending_requests_overflows_as_mmck():
    n = 40_000
    pool = sim.ConnectionPool(max_connections=2, http1_max_pending_requests=3)
    assert pool.capacity == 5
    r = sim.run(pool_graph(0.01, pool), seed=4, rate_per_s=180, n_requests=n)
    blocked = r.edges.loc["client->backend", "pool_overflow"] / n
    p = theory.mmck_blocking_probability(180, 100, 2, 5)
    assert blocked == pytest.approx(p, abs=0.012)
    assert 1 - r.success_rate.value == pytest.approx(blocked, abs=1e-3)
    # the loss system is M/M/c/c: the two formulas agree there
    assert theory.mmck_blocking_probability(300, 100, 4, 4) == pytest.approx(theory.erlang_b(4, 3.0))


def test_max_retries_caps_outstanding_retries():
    """With maxRetries 0 no retry is ever made (upstream_rq_retry_overflow counts them): success is
    1 − p, as without retries; without the cap three attempts give 1 − p³."""
    n, p = 20_000, 0.3
    capped = sim.run(pool_graph(0.001, sim.ConnectionPool(1000, 100, max_retries=0), error_rate=p,
                                retry=sim.Retry(attempts=3, backoff_ms=0)), seed=1, rate_per_s=100, n_requests=n)
    free = sim.run(pool_graph(0.001, sim.ConnectionPool(1000, 100), error_rate=p,
                              retry=sim.Retry(attempts=3, backoff_ms=0)), seed=1, rate_per_s=100, n_requests=n)
    sd = math.sqrt(p * (1 - p) / n)
    assert capped.success_rate.value == pytest.approx(1 - p, abs=4 * sd)
    assert capped.edges.loc["client->backend", "retries"] == 0
    assert capped.edges.loc["client->backend", "retry_overflow"] == pytest.approx(p * n, abs=4 * sd * n)
    assert free.success_rate.value == pytest.approx(1 - p**3, abs=0.003)
    assert free.edges.loc["client->backend", "retry_overflow"] == 0
    with pytest.raises(ValueError, match="max_retries"):
        sim.ConnectionPool(max_retries=-1)


# ----- outlier detection and retries -----------------------------------------------------------------
def _ejection_theory(p, rate, n_hosts, duration, k):
    """Host 0 gets Poisson(λT/n) first attempts before any ejection; ejection iff k failures in a row."""
    mean = rate * duration / n_hosts
    ns = np.arange(int(mean + 10 * math.sqrt(mean) + 10))
    return float(sum(stats.poisson.pmf(m, mean) * theory.run_of_failures_probability(p, int(m), k) for m in ns))


def test_run_of_failures_probability_by_hand():
    assert theory.run_of_failures_probability(0.5, 2, 2) == pytest.approx(0.25)
    assert theory.run_of_failures_probability(0.5, 3, 2) == pytest.approx(3 / 8)  # FFx, xFF minus FFF once
    assert theory.run_of_failures_probability(1.0, 4, 5) == 0.0


@pytest.mark.parametrize("attempts", [1, 3])
def test_per_attempt_ejection_follows_the_run_length_law_with_or_without_retries(attempts):
    """Envoy's detector sees every attempt: retries to another host do not change what host 0 sees."""
    od = sim.OutlierDetection(consecutive_5xx_errors=5, max_ejection_percent=100.0)
    p, rate, hosts, duration = 0.3, 20.0, 4, 30.0
    got = mesh.ejection_probability([p, 0, 0, 0], retry_attempts=attempts, outlier=od, rate_per_s=rate,
                                    duration_s=duration, seeds=range(400))
    truth = _ejection_theory(p, rate, hosts, duration, 5)
    assert got["low"] - 0.02 <= truth <= got["high"] + 0.02, (got, truth)


def test_retries_hide_the_bad_replica_from_a_detector_that_sees_final_responses():
    od = sim.OutlierDetection(consecutive_5xx_errors=5, max_ejection_percent=100.0)
    kw = dict(outlier=od, rate_per_s=20.0, duration_s=30.0, seeds=range(200))
    plain = mesh.ejection_probability([0.5, 0, 0, 0], retry_attempts=1, detector_sees="response", **kw)
    hidden = mesh.ejection_probability([0.5, 0, 0, 0], retry_attempts=3, detector_sees="response", **kw)
    assert plain["probability"] == pytest.approx(_ejection_theory(0.5, 20, 4, 30, 5), abs=0.05)
    assert hidden["probability"] == 0.0 and hidden["error_rate"] == 0.0
    # the bad replica keeps taking its share of the first attempts: amplification 1 + p/n
    assert hidden["amplification"] == pytest.approx(1 + 0.5 / 4, abs=0.02)


# ----- canary and A/B ---------------------------------------------------------------------------------
def test_canary_detection_probability_matches_the_poisson_binomial_gate():
    for p in (0.01, 0.02, 0.05):
        sc = sim.CanaryScenario(canary=sim.Version(error_rate=p), steps_percent=(10,), step_s=60, rate_per_s=20,
                                max_error_rate=0.03, max_p99_ms=1e6, min_requests=20)
        truth = canary.first_check_failure_probability(sc)
        got = canary.detection_probability(sc, range(300))
        assert got["low"] - 0.01 <= truth <= got["high"] + 0.01, (p, got, truth)


def test_exposed_errors_are_the_canarys_errors():
    sc = sim.CanaryScenario(canary=sim.Version(error_rate=0.2), steps_percent=(5, 50, 100), step_s=60, rate_per_s=50)
    r = sim.simulate_canary(sc, 3)
    assert r.rolled_back and r.exposed_errors == r.canary_errors > 0
    # threshold 1: the canary is exposed two intervals at 5 %: E[errors] = 2·λ·T·w·p
    d = canary.detection_probability(sc, range(200))
    assert d["mean_exposed_errors"] == pytest.approx(2 * 50 * 60 * 0.05 * 0.2, rel=0.05)


def test_ab_sample_size_and_power():
    n = abtest.sample_size_two_proportions(0.10, 0.12)
    assert n == 3841   # the textbook figure for 10 % vs 12 %, α 0.05 two-sided, power 0.8
    got = abtest.simulate_ab(0.10, 0.12, n, runs=4000, seed=1)
    assert got["low"] - 0.01 <= 0.8 <= got["high"] + 0.01, got
    with pytest.raises(ValueError, match="p_b"):
        abtest.sample_size_two_proportions(0.1, 0.1)


@pytest.mark.parametrize("looks,published", [(1, 0.05), (2, 0.083), (5, 0.142)])
def test_peeking_inflates_the_false_positive_rate(looks, published):
    exact = abtest.peeking_false_positive_rate(looks)
    assert exact == pytest.approx(published, abs=0.001)   # Armitage, McPherson & Rowe (1969)
    got = abtest.simulate_ab(0.2, 0.2, 5000, looks=looks, runs=6000, seed=looks)
    assert got["low"] - 0.005 <= exact <= got["high"] + 0.005, got


def test_cohorts_are_sticky_and_sized():
    ids = [f"user-{i}" for i in range(20_000)]
    arms = [abtest.cohort(u, 30) for u in ids]
    assert arms == [abtest.cohort(u, 30) for u in ids]
    assert arms.count("b") / len(ids) == pytest.approx(0.30, abs=4 * math.sqrt(0.21 / len(ids)))


# ----- mirroring and sidecar cost -----------------------------------------------------------------------
def test_mirrored_traffic_costs_the_shadows_capacity_and_never_the_callers_answer():
    n, rate, s = 30_000, 50.0, 0.01
    g = nx.DiGraph()
    g.add_node("order", service_time=sim.Exponential(s), servers=1)
    g.add_node("product", service_time=sim.Exponential(s), servers=1)
    g.add_node("product-v2", service_time=sim.Exponential(4 * s), servers=1, error_rate=1.0)
    g.add_edge("order", "product")
    g.add_edge("order", "product-v2", mode="mirror", probability=0.5)
    r = sim.run(sim.CallGraph(g, warmup_fraction=0.0, entry="order"), seed=2, rate_per_s=rate, n_requests=n)
    assert r.edges.loc["order->product-v2", "mode"] == "mirror"
    assert r.edges.loc["order->product-v2", "mirrored"] == pytest.approx(0.5 * n, abs=4 * math.sqrt(0.25 * n))
    assert r.nodes.loc["product-v2", "utilisation"] == pytest.approx(rate * 0.5 * 4 * s, rel=0.05)
    assert r.success_rate.value == 1.0   # the shadow fails every request; nobody sees it
    # mean response = two M/M/1 sojourns at ρ 0.5 (order, product): 2 × s / (1 − ρ)
    assert r.mean_latency_ms.value == pytest.approx(2 * s / (1 - rate * s) * 1000, rel=0.05)


def test_sidecar_cost_uses_istios_published_figures():
    c = mesh.sidecar_cost(1000, hops=1)
    assert c["proxies"] == 2 and c["vcpu"] == pytest.approx(0.70) and c["memory_gib"] == pytest.approx(80 / 1024)
    expected = (0.70 * sim.cost.OPENCOST_CPU_USD_PER_CORE_H + 80 / 1024 * sim.cost.OPENCOST_RAM_USD_PER_GIB_H) * 730
    assert c["usd"] == pytest.approx(expected)
    assert mesh.sidecar_cost(3000, hops=4)["usd"] == pytest.approx(12 * expected)
    assert c["p90_added_ms"] == mesh.ISTIO_SIDECAR["p90_added_ms"] == 2.65
    priced = mesh.sidecar_cost(1000, instance_type="general.large")
    assert priced["usd_per_h"] > 0 and priced["usd"] != c["usd"]
    with pytest.raises(ValueError, match="hops"):
        mesh.sidecar_cost(1000, hops=0)


# ----- widgets ----------------------------------------------------------------------------------------
def test_day2_widget_updates_run_headless_and_agree_with_closed_forms():
    from sim import widgets

    rl = widgets.ratelimit_update(limit_per_s=10, burst=10, duration_s=60)
    assert rl["fixed_window_worst_1s"] <= rl["fixed_window_bound_1s"] == 20
    cn = widgets.canary_update(canary_error_rate=0.05, max_error_rate=0.01, seeds=40)
    assert cn["rolled_back"] >= 0.9 and cn["rows"][0]["rolled_back"] <= 0.1   # p = 0 is never rolled back
    ms = widgets.mesh_update(bad_error_rate=0.5, seeds=30)
    assert ms["retries, final response"]["probability"] == 0.0
    assert ms["no retries"]["probability"] >= 0.9
    for make in (widgets.ratelimit_explorer, widgets.canary_explorer, widgets.mesh_explorer):
        w = make()
        assert len([c for c in w.children if hasattr(c, "description")]) >= 3


def test_plan_named_helpers_agree_with_the_closed_forms():
    from sim.ratelimit import max_admitted_in_window

    burst = np.concatenate([np.full(30, 0.999), np.full(30, 1.001)])
    assert max_admitted_in_window(burst, sim.FixedWindow(20)) == fixed_window_worst_sliding_count(20)
    assert abtest.required_sample_size(0.10, 0.12) == abtest.sample_size_two_proportions(0.10, 0.12)
    # 100 users/s for 10 min, a look every 2 min: 5 looks, the peeking rate of 5 looks
    got = abtest.simulate_ab_test(0.2, 0.2, 100, 600, peeking_every_s=120, runs=6000, seed=9)
    assert got["looks"] == 5
    assert got["low"] - 0.005 <= abtest.peeking_false_positive_rate(5) <= got["high"] + 0.005, got


# ----- deliberate breakage: the closed-form checks above would catch a wrong model ------------------
def test_the_erlang_b_check_catches_a_pool_that_refuses_without_looking_at_free_connections(monkeypatch):
    """The rule before this fix (overflow when waiting ≥ pending, free connections or not) refuses
    everything with no pending queue: nowhere near Erlang B."""
    monkeypatch.setattr(sim.ConnectionPool, "overflows",
                        lambda self, in_flight, waiting: waiting >= self.http1_max_pending_requests)
    n = 5_000
    r = sim.run(pool_graph(0.01, sim.ConnectionPool(4, 0)), seed=2, rate_per_s=300, n_requests=n)
    blocked = r.edges.loc["client->backend", "pool_overflow"] / n
    assert abs(blocked - theory.erlang_b(4, 3.0)) > 0.5


def test_the_run_length_check_tells_one_failure_too_few_from_the_right_threshold():
    od = sim.OutlierDetection(consecutive_5xx_errors=5, max_ejection_percent=100.0)
    got = mesh.ejection_probability([0.3, 0, 0, 0], outlier=od, rate_per_s=20.0, duration_s=30.0, seeds=range(400))
    wrong = _ejection_theory(0.3, 20.0, 4, 30.0, 4)     # a detector firing after 4 in a row
    assert not got["low"] - 0.02 <= wrong <= got["high"] + 0.02, (got, wrong)


def test_the_canary_gate_closed_form_needs_the_minimum_request_rule():
    """At 2 % of 10 req/s an interval has 12 canary requests on average, below min_requests 20:
    the check fails for want of data, which the sim reproduces and a gate without the rule misses."""
    sc = sim.CanaryScenario(canary=sim.Version(error_rate=0.002), steps_percent=(2,), step_s=60, rate_per_s=10,
                            max_error_rate=0.05, max_p99_ms=1e6, min_requests=20)
    got = canary.detection_probability(sc, range(200))
    assert got["low"] - 0.01 <= canary.first_check_failure_probability(sc) <= got["high"] + 0.01
    without = canary.first_check_failure_probability(
        sim.CanaryScenario(**{**sc.__dict__, "min_requests": 1}))
    assert without < got["low"] - 0.5
