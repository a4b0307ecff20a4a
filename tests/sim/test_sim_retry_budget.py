"""Finagle's retry budget expires deposits after its TTL, and load and error rates can change
within a run (item 5): an outage after a healthy minute."""

import networkx as nx
import numpy as np
import pytest

import sim
from sim.resilience import RetryBudget


def outage_graph(retry):
    g = nx.DiGraph()
    g.add_node("client", service_time=sim.Deterministic(1e-6), servers=10_000)
    g.add_node("backend", service_time=sim.Deterministic(0.002), servers=1_000, error_rate=((0, 0.0), (60, 1.0)))
    g.add_edge("client", "backend", retry=retry)
    return sim.CallGraph(g, warmup_fraction=0.0)


def test_retries_in_any_ttl_window_stay_within_the_finagle_bound():
    """200 req/s, healthy for 60 s, then every call fails. Budget 20 %, TTL 10 s, 10 retries/s:
    in the 10 s before any retry, retries ≤ 10 × 10 + 0.2 × (requests then) ≈ 500, and once the
    healthy minute's deposits expired the retry rate is 0.2 × 200 + 10 = 50/s. A never-expiring
    balance let 2,400 + retries out in the first seconds of the outage."""
    retry = sim.Retry(attempts=3, backoff_ms=0, budget=0.2)
    r = sim.run(outage_graph(retry), seed=1, rate_per_s=200, n_requests=24_000)  # 120 s
    t = np.array([x for x, _ in r.retry_times_s])
    arrivals = r.arrival_s
    assert t.min() >= 60.0
    # at every retry: retries of the last 10 s ≤ reserve + 20 % of the requests of the last 10 s
    for now in t[::25]:
        retries = ((t > now - 10) & (t <= now)).sum()
        requests = ((arrivals > now - 10) & (arrivals <= now)).sum()
        assert retries <= 100 + 0.2 * requests + 1, (now, retries, requests)
    first_10s = ((t >= 60) & (t < 70)).sum()
    assert first_10s == pytest.approx(500, rel=0.1)
    steady = ((t >= 80) & (t < 110)).sum() / 30
    assert steady == pytest.approx(50, rel=0.1)


def test_budget_entries_expire_after_the_ttl():
    b = RetryBudget(0.2, 0.0, 10.0)  # no reserve: only deposits
    for i in range(10):
        b.deposit(float(i))  # 10 requests → 2 retries
    assert b.withdraw(9.5) and b.withdraw(9.6) and not b.withdraw(9.7)
    assert b.withdraw(20.0) is False  # everything expired by t = 19
    b.deposit(20.0)
    assert b.live == pytest.approx(0.2)


def test_load_steps_change_the_arrival_rate():
    g = nx.DiGraph()
    g.add_node("api", service_time=sim.Deterministic(1e-4), servers=100)
    r = sim.run(sim.CallGraph(g, warmup_fraction=0.0, rate_per_s=((0, 50), (20, 400))), seed=2, n_requests=10_000)
    a = r.arrival_s
    assert ((a < 20).sum()) == pytest.approx(1_000, abs=4 * 1_000 ** 0.5)
    later = a[a >= 20]
    assert (later.size - 1) / (later[-1] - 20) == pytest.approx(400, rel=0.05)
    with pytest.raises(ValueError, match="rate_per_s"):
        sim.CallGraph(g, rate_per_s=((0, 50), (10, 0)))
