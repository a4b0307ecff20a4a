"""The canary model follows Flagger's analysis loop and reads p99 as Prometheus does (item 1)."""

import math

import numpy as np
import pytest
from scipy import stats

import sim
from sim.canary import CLOUDMART_BUCKETS_S, histogram_quantile


def test_failed_checks_halt_advancement_and_never_promote():
    """5 % canary errors, threshold 10 > the 5 steps: the old model walked 5 → 100 % and
    promoted; Flagger stays at 5 % and rolls back after `threshold` failed checks."""
    for seed in range(5):
        r = sim.run(sim.CanaryScenario(canary=sim.Version(error_rate=0.05), failed_checks_to_rollback=10), seed=seed)
        assert r.decision == "rolled_back"
        assert r.steps.weight_percent.max() == 5
        assert len(r.steps) == 10 and not r.steps.passed.any()
        assert r.decided_at_s == 11 * 120.0


def test_exposure_until_rollback_is_threshold_plus_one_intervals_at_the_failing_weight():
    """50 req/s, 5 % canary errors, threshold 5, interval 120 s: Flagger analyses 5 times at 5 %
    and rolls back on the 6th pass, so the canary serves 50 × 0.05 × 120 × 6 = 1,800 requests
    (Poisson) with 5 % errors — the old model served ~11,500 and walked to 100 %."""
    sc = sim.CanaryScenario(canary=sim.Version(error_rate=0.05), failed_checks_to_rollback=5)
    runs = [sim.run(sc, seed=s) for s in range(20)]
    expected = 50 * 0.05 * 120 * 6
    mean_requests = np.mean([r.canary_requests for r in runs])
    assert abs(mean_requests - expected) < 4 * math.sqrt(expected / 20)
    errors = sum(r.canary_errors for r in runs)
    requests = sum(r.canary_requests for r in runs)
    assert abs(errors / requests - 0.05) < 4 * math.sqrt(0.05 * 0.95 / requests)


def test_a_failed_check_keeps_the_weight_and_later_passes_resume():
    """Checks that fail now and then (1 % canary errors against a 1 % limit): after every failed
    analysis the next one runs at the same weight; the failed count never goes down."""
    sc = sim.CanaryScenario(canary=sim.Version(error_rate=0.01), failed_checks_to_rollback=4, max_p99_ms=1e9)
    seen_fail_then_pass = False
    for seed in range(20):
        steps = sim.run(sc, seed=seed).steps
        for prev, nxt in zip(steps.itertuples(), list(steps.itertuples())[1:]):
            if not prev.passed:
                assert nxt.weight_percent == prev.weight_percent
                seen_fail_then_pass |= nxt.passed
            assert nxt.failed_checks >= prev.failed_checks
    assert seen_fail_then_pass


def test_histogram_quantile_interpolates_like_prometheus():
    # hand-computed: 100 observations, 90 in (0, 0.1], 10 in (0.1, 0.2]; p95: rank 95 is half-way
    # through the second bucket → 0.15; a rank in +Inf returns the largest finite bound
    assert histogram_quantile(0.95, (0.1, 0.2), [90, 10, 0]) == pytest.approx(0.15)
    assert histogram_quantile(0.5, (0.1, 0.2), [90, 10, 0]) == pytest.approx(0.1 * 50 / 90)
    assert histogram_quantile(0.99, (0.1, 0.2), [90, 5, 5]) == 0.2
    assert math.isnan(histogram_quantile(0.99, (0.1,), [0, 0]))
    with pytest.raises(ValueError, match="counts"):
        histogram_quantile(0.9, (0.1, 0.2), [1])


def _lognormal_histogram_p99_ms(mean_s, cv, bounds=CLOUDMART_BUCKETS_S):
    sigma = math.sqrt(math.log(1 + cv * cv))
    mu = math.log(mean_s) - sigma * sigma / 2
    cdf = [stats.lognorm(sigma, scale=math.exp(mu)).cdf(b) for b in bounds]
    counts = np.diff([0.0, *cdf, 1.0])
    return histogram_quantile(0.99, bounds, counts) * 1000, stats.lognorm(sigma, scale=math.exp(mu)).ppf(0.99) * 1000


def test_the_gate_reads_the_live_buckets_so_a_slower_canary_passes_as_it_would_live():
    """Baseline LogNormal(50 ms, cv 0.5): true p99 134 ms, histogram_quantile reads 216 ms; a
    1.5× slower canary reads only 1.13× the baseline. Theory first, then the model."""
    base_hist, base_true = _lognormal_histogram_p99_ms(0.05, 0.5)
    slow_hist, slow_true = _lognormal_histogram_p99_ms(0.075, 0.5)
    assert base_true == pytest.approx(134.0, abs=0.5) and base_hist == pytest.approx(216.3, abs=0.5)
    assert slow_hist / base_hist == pytest.approx(1.13, abs=0.005)
    sc = sim.CanaryScenario(canary=sim.Version(latency=sim.LogNormal(0.075, 0.5)), steps_percent=(50,),
                            rate_per_s=200, max_p99_ratio_to_baseline=1.2)
    live_like = sim.run(sc, seed=3)
    assert live_like.steps.baseline_p99_ms.iloc[0] == pytest.approx(base_hist, rel=0.03)
    assert live_like.decision == "promoted"
    exact = sim.run(sim.CanaryScenario(**{**sc.__dict__, "histogram_buckets_s": None}), seed=3)
    assert exact.steps.baseline_p99_ms.iloc[0] == pytest.approx(base_true, rel=0.05)
    assert exact.decision == "rolled_back"


def test_buckets_are_the_services_histogram_buckets():
    from services.common.metrics import HTTP_DURATION

    assert tuple(HTTP_DURATION._upper_bounds[:-1]) == CLOUDMART_BUCKETS_S
    with pytest.raises(ValueError, match="histogram_buckets_s"):
        sim.CanaryScenario(histogram_buckets_s=(0.5, 0.1))
