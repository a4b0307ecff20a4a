"""Per-try and overall (route) timeouts (item 6); least-request with each proxy's own view (item 7)."""

import math

import networkx as nx
import numpy as np
import pytest

import sim
from sim import theory


def slow_backend(**edge):
    g = nx.DiGraph()
    g.add_node("client", service_time=sim.Deterministic(1e-6), servers=10_000)
    g.add_node("backend", service_time=sim.Deterministic(0.5), servers=10_000)
    g.add_edge("client", "backend", **edge)
    return sim.CallGraph(g, warmup_fraction=0.0)


def test_per_try_timeout_alone_lets_retries_add_up():
    """perTryTimeout 100 ms, 3 attempts, no back-off, a 500 ms backend: every call fails after
    3 × 100 ms = 300 ms (the old model's only timeout)."""
    r = sim.run(slow_backend(timeout_ms=100, retry=sim.Retry(attempts=3, backoff_ms=0)), seed=0,
                rate_per_s=20, n_requests=400)
    assert r.success_rate.value == 0
    assert np.allclose(r.latency_ms, 300.001, rtol=0, atol=1e-6)


@pytest.mark.parametrize("route_ms, attempts", [(250, 3), (150, 2), (80, 1)])
def test_route_timeout_bounds_the_whole_call_including_retries(route_ms, attempts):
    """Istio's route timeout with perTryTimeout 100 ms: the caller gets its 504 at the route
    timeout, and only the attempts started before it went out (⌈route / 100⌉)."""
    r = sim.run(slow_backend(timeout_ms=100, route_timeout_ms=route_ms, retry=sim.Retry(attempts=3, backoff_ms=0)),
                seed=0, rate_per_s=20, n_requests=400)
    assert np.allclose(r.latency_ms, route_ms + 0.001, rtol=0, atol=1e-6)  # + the client's 1 µs
    edge = r.edges.loc["client->backend"]
    assert edge["attempts"] == 400 * attempts == 400 * math.ceil(route_ms / 100)
    assert edge["route_timeouts"] == 400 and edge["failed"] == 400


def replicas_graph(proxies=None, rate=360.0):
    g = nx.DiGraph()
    g.add_node("caller", service_time=sim.Deterministic(1e-6), servers=100_000)
    g.add_node("backend", service_time=sim.Exponential(0.01), servers=1, replicas=4, load_balancer="least_request")
    g.add_edge("caller", "backend", **({"client_proxies": proxies} if proxies else {}))
    return sim.CallGraph(g, warmup_fraction=0.1)


def test_least_request_with_per_proxy_views_degrades_toward_random_routing():
    """4 replicas at ρ 0.9. One balancer seeing every request in flight (P2C on global counts)
    keeps the p99 far below random routing; 16 proxies (as 16 callers) each seeing only their own
    requests do worse, and 2,048 proxies (each with almost nothing in flight)
    see no difference between hosts: random routing,
    where each replica is an M/M/1 queue: p99 = ln(100) / (μ − λ/4) = 460.5 ms."""
    mm1_p99_ms = theory.mm1_sojourn_percentile_s(90.0, 100.0, 0.99) * 1000
    assert mm1_p99_ms == pytest.approx(460.5, abs=0.1)
    global_view = sim.run(replicas_graph(), seed=1, rate_per_s=360, n_requests=60_000)
    per_proxy = sim.run(replicas_graph(2048), seed=1, rate_per_s=360, n_requests=60_000)
    few = sim.run(replicas_graph(16), seed=1, rate_per_s=360, n_requests=60_000)
    assert global_view.p99_latency_ms.value < 0.6 * mm1_p99_ms
    assert global_view.p99_latency_ms.value < few.p99_latency_ms.value < per_proxy.p99_latency_ms.value
    assert per_proxy.p99_latency_ms.value == pytest.approx(mm1_p99_ms, rel=0.15)
    assert per_proxy.p99_latency_ms.covers(mm1_p99_ms)
    # 16 callers with their own views: about a third worse than one global view (161 → 215 ms)
    assert few.p99_latency_ms.value > 1.15 * global_view.p99_latency_ms.value
