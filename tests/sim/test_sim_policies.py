"""Circuit-breaker state machine, token bucket, load balancers and retry backoff as units."""

import collections

import numpy as np
import pytest
from scipy import stats

import sim
from sim.resilience import CLOSED, HALF_OPEN, OPEN
from sim_checks import SEEDS


def test_breaker_trips_on_consecutive_failures_only_when_consecutive():
    b = sim.CircuitBreaker(consecutive_failures=3, open_ms=1000).new_state()
    for t, ok in enumerate([False, False, True, False, False]):
        assert b.allow(t * 0.01)
        b.record(ok, t * 0.01)
    assert b.state == CLOSED
    b.allow(0.05)
    b.record(False, 0.05)
    assert b.state == OPEN
    assert b.transitions == [(0.05, CLOSED, OPEN)]


def test_breaker_open_half_open_closed_cycle():
    b = sim.CircuitBreaker(consecutive_failures=2, open_ms=500, half_open_calls=2).new_state()
    for t in (0.0, 0.1):
        b.allow(t)
        b.record(False, t)
    assert b.state == OPEN
    assert not b.allow(0.3)  # still open before 500 ms
    assert b.allow(0.6)  # first probe moves it to half-open
    assert b.state == HALF_OPEN
    assert b.allow(0.6)  # second probe
    assert not b.allow(0.6)  # only two probes at a time
    b.record(True, 0.61)
    assert b.state == HALF_OPEN
    b.record(True, 0.62)
    assert b.state == CLOSED
    assert [(f, t) for _, f, t in b.transitions] == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert b.rejected == 2


def test_breaker_failed_probe_reopens_and_restarts_the_timer():
    b = sim.CircuitBreaker(consecutive_failures=1, open_ms=100).new_state()
    b.allow(0.0)
    b.record(False, 0.0)
    assert b.allow(0.2) and b.state == HALF_OPEN
    b.record(False, 0.25)
    assert b.state == OPEN
    assert not b.allow(0.3)  # 50 ms after re-opening
    assert b.allow(0.36)


def test_breaker_error_rate_trip_needs_min_calls_and_the_rate():
    spec = sim.CircuitBreaker(consecutive_failures=None, error_rate=0.5, window=10, min_calls=10)
    b = spec.new_state()
    outcomes = [True, False] * 4 + [True]  # 9 calls, 4 failures
    for i, ok in enumerate(outcomes):
        b.allow(i)
        b.record(ok, i)
    assert b.state == CLOSED  # fewer than min_calls
    b.allow(9)
    b.record(False, 9)  # 10 calls, 5 failures: 50 %
    assert b.state == OPEN


def test_breaker_needs_a_trip_rule():
    with pytest.raises(ValueError, match="consecutive_failures"):
        sim.CircuitBreaker(consecutive_failures=None, error_rate=None)


def test_retry_backoff_exponential_capped_and_jittered():
    r = sim.Retry(attempts=6, backoff_ms=10, multiplier=2, max_backoff_ms=50, jitter=0.0)
    assert [round(r.backoff_s(k, 0.5) * 1000, 9) for k in range(1, 6)] == [10, 20, 40, 50, 50]
    full = sim.Retry(backoff_ms=10, jitter=1.0)
    assert full.backoff_s(1, 0.0) == pytest.approx(0.010)
    assert full.backoff_s(1, 0.999) == pytest.approx(0.010 * 0.001)


@pytest.mark.parametrize("offered", [50.0, 200.0])
def test_token_bucket_long_run_admitted_rate_is_the_refill_rate(offered):
    bucket = sim.TokenBucket(rate_per_s=20.0, burst=10)
    duration = 1_000.0
    results = [sim.simulate_rate_limit(offered, bucket, duration, seed=s) for s in SEEDS]
    for r in results:
        # can never beat the bucket: full burst plus the refill
        assert r.admitted <= bucket.burst + bucket.rate_per_s * duration
    mean_rate = np.mean([r.admitted_rate_per_s for r in results])
    assert mean_rate == pytest.approx(bucket.rate_per_s, rel=0.01)


def test_token_bucket_admits_everything_well_below_the_rate():
    r = sim.simulate_rate_limit(2.0, sim.TokenBucket(rate_per_s=20.0, burst=10), 2_000.0, seed=1)
    assert r.rejected_fraction < 0.001
    assert r.admitted_rate_per_s == pytest.approx(2.0, rel=0.05)


def test_token_bucket_state_refills_over_time():
    s = sim.TokenBucket(rate_per_s=10, burst=2).new_state()
    assert s.allow(0.0) and s.allow(0.0) and not s.allow(0.0)
    assert s.retry_after_s() == pytest.approx(0.1)
    assert not s.allow(0.05)
    assert s.allow(0.1)


def test_round_robin_and_weighted_shares():
    rr = sim.RoundRobin().new_state(3)
    assert [rr.pick([0, 0, 0]) for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    w = sim.Weighted((5, 1, 1)).new_state(3)
    picks = [w.pick([0, 0, 0]) for _ in range(700)]
    assert collections.Counter(picks) == {0: 500, 1: 100, 2: 100}
    # smooth: the heavy replica never gets more than 5 in a row and the light ones are spread out
    runs = max(len(list(g)) for k, g in __import__("itertools").groupby(picks) if k == 0)
    assert runs <= 4
    dark = sim.Weighted((1, 0)).new_state(2)
    assert {dark.pick([0, 0]) for _ in range(50)} == {0}


def test_least_request_and_random():
    full = sim.LeastRequest(choices=None).new_state(4)
    assert full.pick([3, 1, 0, 2]) == 2
    p2c = sim.LeastRequest(choices=2).new_state(8, np.random.default_rng(0))
    inflight = [5, 5, 5, 5, 5, 5, 5, 0]
    n = 40_000
    picks = [p2c.pick(inflight) for _ in range(n)]
    # Replica 7 wins whenever it is sampled. Envoy samples the two hosts independently (with
    # replacement): P = 1 - (7/8)^2 = 15/64 = 0.2344; without replacement it would be
    # 1 - C(7,2)/C(8,2) = 1/4. With 40 000 picks the standard error is 0.0021, so 4 standard errors
    # around 15/64 exclude 1/4 (7.4 standard errors away).
    share, p = picks.count(7) / n, 15 / 64
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(share - p) <= 4 * sigma, (share, p, sigma)
    assert abs(share - 1 / 4) > 4 * sigma
    # the other seven share the rest evenly (a sampled pair of equals keeps the first drawn)
    others = collections.Counter(x for x in picks if x != 7)
    assert stats.chisquare(list(others.values())).pvalue > 0.001
    rnd = sim.RandomChoice().new_state(4, np.random.default_rng(1))
    counts = collections.Counter(rnd.pick([0] * 4) for _ in range(8000))
    assert stats.chisquare(list(counts.values())).pvalue > 0.001


def test_bad_policy_inputs():
    with pytest.raises(ValueError, match=r"attempts: got 0"):
        sim.Retry(attempts=0)
    with pytest.raises(ValueError, match=r"jitter: got 2"):
        sim.Retry(jitter=2)
    with pytest.raises(ValueError, match=r"rate_per_s: got -1"):
        sim.TokenBucket(rate_per_s=-1)
    with pytest.raises(ValueError, match=r"weights\[1\]: got -2"):
        sim.Weighted((1, -2))
    with pytest.raises(ValueError, match="load_balancer"):
        from sim.loadbalancing import make_load_balancer
        make_load_balancer("fastest")


def test_server_gives_the_same_waits_as_a_plain_simpy_resource():
    """sim's Server releases without a separate event; FIFO waits must equal SimPy's Resource."""
    import simpy

    from sim.servers import Server

    rng = np.random.default_rng(4)
    gaps = rng.exponential(1 / 1.8, 5_000).tolist()
    work = rng.exponential(1.0, 5_000).tolist()

    def waits(resource_class):
        env = simpy.Environment()
        server = resource_class(env, capacity=2)
        out = [0.0] * len(gaps)

        def customer(env, i):
            arrived = env.now
            with server.request() as req:
                yield req
                out[i] = env.now - arrived
                yield env.timeout(work[i])

        def source(env):
            for i, gap in enumerate(gaps):
                yield env.timeout(gap)
                env.process(customer(env, i))

        env.process(source(env))
        env.run()
        return np.array(out)

    ours, reference = waits(Server), waits(simpy.Resource)
    assert np.allclose(ours, reference, rtol=0, atol=1e-9)
    assert ours.max() > 0  # the queue did form
