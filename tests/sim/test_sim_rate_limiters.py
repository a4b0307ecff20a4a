"""The rate limiters the targets run (item 9), against hand counts of their documented rules."""

import networkx as nx
import pytest

import sim


def test_kong_fixed_window_admits_the_limit_per_clock_second_per_node():
    """3,000 req/s for 2 s from idle against second=1,000: each clock-aligned window admits
    exactly 1,000 (2,000 in all); 2 Kong nodes with their own counters admit 2 × 2,000. A token
    bucket of the same rate and burst admits its full burst plus the refill: ≈ 3,000."""
    one = sim.simulate_rate_limit(3000, sim.KongRateLimiting(second=1000), duration_s=2.0, seed=1)
    assert one.admitted == 2000
    two = sim.simulate_rate_limit(3000, sim.KongRateLimiting(second=1000, nodes=2), duration_s=2.0, seed=1)
    assert two.admitted == 4000
    bucket = sim.simulate_rate_limit(3000, sim.TokenBucket(1000, burst=1000), duration_s=2.0, seed=1)
    assert bucket.admitted == pytest.approx(3000, abs=2)


def test_kong_minute_limit_holds_across_seconds():
    r = sim.simulate_rate_limit(50, sim.KongRateLimiting(second=100, minute=600), duration_s=60.0, seed=2)
    assert r.admitted == 600  # 50/s would pass the second limit; the minute window stops it at 600


def test_envoy_local_rate_limit_refills_in_steps():
    """max_tokens 1,000, 100 tokens every 0.1 s, 3,000 req/s for 2 s: the full bucket, then 100
    per fill at 0.1 … 1.9 s → 1,000 + 19 × 100 = 2,900; one fill of 1,000 per second → 2,000."""
    steps = sim.simulate_rate_limit(3000, sim.EnvoyLocalRateLimit(1000, 100, 0.1), duration_s=2.0, seed=3)
    assert steps.admitted == 2900
    coarse = sim.simulate_rate_limit(3000, sim.EnvoyLocalRateLimit(1000, 1000, 1.0), duration_s=2.0, seed=3)
    assert coarse.admitted == 2000
    per_proxy = sim.simulate_rate_limit(3000, sim.EnvoyLocalRateLimit(1000, 1000, 1.0, proxies=3),
                                        duration_s=2.0, seed=3)
    assert per_proxy.admitted == 3 * 2000  # each Envoy has its own bucket


def test_limiters_work_as_a_node_rate_limit():
    g = nx.DiGraph()
    g.add_node("gateway", service_time=sim.Deterministic(1e-4), servers=1000,
               rate_limit=sim.KongRateLimiting(second=50))
    r = sim.run(sim.CallGraph(g, warmup_fraction=0.0), seed=4, rate_per_s=200, n_requests=2_000)
    seconds = int(r.arrival_s[-1]) + 1
    assert r.nodes.loc["gateway", "visits"] - r.nodes.loc["gateway", "rate_limited"] <= 50 * seconds
    with pytest.raises(ValueError, match="second"):
        sim.KongRateLimiting()
    with pytest.raises(ValueError, match="rate_limit"):
        bad = nx.DiGraph()
        bad.add_node("a", service_time=0.001, rate_limit=100)
        sim.CallGraph(bad)
