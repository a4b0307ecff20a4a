"""The mesh's resilience mechanisms (Envoy outlier detection per host, Istio retries, connection
pools that queue) and an application breaker with resilience4j's semantics (item 2). Each is
checked against a hand-computed timeline or queueing theory, not against the model itself."""

import math

import networkx as nx
import numpy as np
import pytest

import sim


def backend_graph(replica_error_rate=None, error_rate=0.0, replicas=4, service_s=0.01, servers=4, **edge):
    g = nx.DiGraph()
    g.add_node("client", service_time=sim.Deterministic(1e-6), servers=10_000)
    node = dict(service_time=sim.Exponential(service_s), servers=servers, replicas=replicas, error_rate=error_rate)
    if replica_error_rate is not None:
        node["replica_error_rate"] = replica_error_rate
    g.add_node("backend", **node)
    g.add_edge("client", "backend", **edge)
    return sim.CallGraph(g, warmup_fraction=0.0)


def test_outlier_detection_ejects_the_one_faulty_replica_with_growing_ejection_times():
    """One of 4 replicas always fails. Envoy ejects it after 5 consecutive 5xx for 30 s × k (k-th
    ejection), returns it at the first 10 s sweep after that, and it is re-ejected after 5 more
    failures. Over 300 s: ejections of 30, 60, 90, 120 s, 5 failed requests each."""
    od = sim.OutlierDetection(max_ejection_percent=50)
    r = sim.run(backend_graph((1.0, 0.0, 0.0, 0.0), outlier_detection=od), seed=1, rate_per_s=100, n_requests=30_000)
    assert {host for _, _, host, _ in r.ejections} == {0}  # the healthy replicas are never ejected
    assert [d for *_, d in r.ejections] == [30.0, 60.0, 90.0, 120.0]
    for (t, *_, d), (t_next, *_) in zip(r.ejections, r.ejections[1:]):
        returned = math.ceil((t + d) / 10.0) * 10.0  # the sweep that returns it
        assert returned <= t_next < returned + 1.0  # 5 requests at ~25/s later it is out again
    assert r.edges.loc["client->backend", "failed"] == 5 * len(r.ejections)
    # a shared per-service breaker would have failed everyone fast; here the others serve on
    assert r.success_rate.value > 0.999


def test_max_ejection_percent_and_the_panic_threshold():
    """3 of 4 replicas fail. max_ejection_percent 50: at most 2 are out, so one bad replica keeps
    a third of the traffic. With 100 % allowed and min_health_percent 50, ejecting the third
    leaves 25 % healthy: Envoy panics and balances over all 4 (1 in 4 succeeds); with Istio's
    default minHealthPercent 0 all traffic goes to the good replica."""
    bad = (1.0, 1.0, 1.0, 0.0)
    capped = sim.run(backend_graph(bad, outlier_detection=sim.OutlierDetection(max_ejection_percent=50)),
                     seed=2, rate_per_s=100, n_requests=20_000)
    ejected_at_once = _max_concurrently_ejected(capped.ejections, 10.0)
    assert ejected_at_once == 2
    assert capped.success_rate.value == pytest.approx(0.5, abs=0.05)
    panic = sim.run(backend_graph(bad, outlier_detection=sim.OutlierDetection(max_ejection_percent=100,
                                                                              min_health_percent=50)),
                    seed=2, rate_per_s=100, n_requests=20_000)
    assert panic.success_rate.value == pytest.approx(0.25, abs=0.03)
    no_panic = sim.run(backend_graph(bad, outlier_detection=sim.OutlierDetection(max_ejection_percent=100)),
                       seed=2, rate_per_s=100, n_requests=20_000)
    assert no_panic.success_rate.value > 0.99


def _max_concurrently_ejected(ejections, interval_s):
    events = []
    for t, _, _, d in ejections:
        events += [(t, 1), (math.ceil((t + d) / interval_s) * interval_s, -1)]
    level = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak


def test_istio_default_retries_against_30_percent_errors():
    """Independent 30 % errors: 3 attempts (Istio: 2 retries, another host) succeed with
    1 − 0.3³ = 0.973; without retries 0.70 — the old shared breaker predicted 0.347."""
    n = 20_000
    with_retries = sim.run(backend_graph(error_rate=0.3, retry=sim.Retry.istio_default()), seed=3,
                           rate_per_s=100, n_requests=n)
    p = sim.theory.retry_success_probability(0.3, 3)
    assert with_retries.success_rate.value == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n))
    plain = sim.run(backend_graph(error_rate=0.3), seed=3, rate_per_s=100, n_requests=n)
    assert plain.success_rate.value == pytest.approx(0.7, abs=4 * math.sqrt(0.21 / n))


def test_retries_go_to_another_host():
    """One replica of 2 always fails, random balancing, 2 attempts: with Envoy's previous-hosts
    predicate the retry always lands on the good replica (success 1); drawn afresh it hits the
    bad one again half the time (success 1 − ½·½ = 0.75)."""
    n = 8_000
    results = {}
    for other_host in (True, False):
        cg = backend_graph((1.0, 0.0), replicas=2,
                           retry=sim.Retry(attempts=2, backoff_ms=1, retry_other_host=other_host))
        cg.graph.nodes["backend"]["load_balancer"] = "random"
        results[other_host] = sim.run(cg, seed=4, rate_per_s=50, n_requests=n)
    assert results[True].success_rate.value == 1.0
    assert results[False].success_rate.value == pytest.approx(0.75, abs=4 * math.sqrt(0.75 * 0.25 / n))


def test_connection_pool_queues_then_overflows_like_an_mm1k_queue():
    """One connection (max_connections 1) and http1_max_pending_requests 4 in front of an
    exponential 10 ms backend at 80 req/s: an M/M/1/K queue with K = 5, blocking probability
    (1 − ρ) ρ^K / (1 − ρ^(K+1)) = 0.0888 at ρ 0.8. A bulkhead of 1 would reject 80 % at once."""
    rho, k, n = 0.8, 5, 40_000
    p_block = (1 - rho) * rho**k / (1 - rho ** (k + 1))
    pool = sim.ConnectionPool(max_connections=1, http1_max_pending_requests=k - 1)
    r = sim.run(backend_graph(replicas=1, servers=1, connection_pool=pool), seed=5, rate_per_s=80, n_requests=n)
    blocked = r.edges.loc["client->backend", "pool_overflow"] / n
    assert blocked == pytest.approx(p_block, abs=0.012)  # ± 3 sd of a correlated estimate
    assert 1 - r.success_rate.value == pytest.approx(blocked, abs=1e-3)
    bulkhead = sim.run(backend_graph(replicas=1, servers=1, bulkhead=sim.Bulkhead(1)), seed=5, rate_per_s=80, n_requests=n)
    # a bulkhead of 1 is M/M/1/1: Erlang loss ρ / (1 + ρ) = 0.444
    assert bulkhead.edges.loc["client->backend", "bulkhead_rejected"] / n == pytest.approx(0.8 / 1.8, abs=0.02)


def test_application_breaker_follows_resilience4j():
    """Backend fails everything for 30 s, then 10 %. resilience4j defaults: opens once 100 calls
    are recorded at ≥ 50 % failures (after 100 calls at 50/s = 2 s), stays open 60 s, then 10
    half-open calls at 10 % errors close it unless ≥ 5 of them fail (P = 0.0016): closed again
    ~62 s after the trip. The consecutive-failure breaker with a single probe would reopen on any
    failed probe."""
    g = nx.DiGraph()
    g.add_node("client", service_time=sim.Deterministic(1e-6), servers=1000)
    g.add_node("backend", service_time=sim.Deterministic(0.001), servers=100, error_rate=((0, 1.0), (30, 0.1)))
    g.add_edge("client", "backend", breaker=sim.ApplicationBreaker())
    closed_after = []
    for seed in range(10):
        r = sim.run(sim.CallGraph(g, warmup_fraction=0.0), seed=seed, rate_per_s=50, n_requests=6_000)
        moves = [(round(t, 1), frm, to) for t, _, frm, to in r.breaker_transitions]
        assert moves[0][1:] == ("closed", "open") and moves[0][0] == pytest.approx(2.0, abs=0.5)
        assert moves[1][1:] == ("open", "half_open") and moves[1][0] == pytest.approx(62.0, abs=0.5)
        assert moves[2][1:] == ("half_open", "closed")
        closed_after.append(moves[2][0] - 30.0)
        assert len(moves) == 3
    # 10 half-open calls at 50/s take 0.2 s: back to closed ~32 s after the recovery
    assert np.mean(closed_after) == pytest.approx(32.2, abs=0.5)


def test_bad_mesh_settings_are_rejected():
    with pytest.raises(ValueError, match="max_ejection_percent"):
        sim.OutlierDetection(max_ejection_percent=150)
    with pytest.raises(ValueError, match="http1_max_pending_requests"):
        sim.ConnectionPool(http1_max_pending_requests=-1)
    with pytest.raises(ValueError, match="failure_rate_threshold"):
        sim.ApplicationBreaker(failure_rate_threshold=0)
    with pytest.raises(ValueError, match="replica_error_rate"):
        sim.CallGraph(backend_graph((1.0, 0.0)).graph)
