"""Calibration from server-side measurements (sim.calibrate), checked against known ground truth:
samples of a known log-normal observed through a real prometheus_client histogram with the
services' own buckets, read back in the frame cm.metrics() returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import sim
from services.common.metrics import HTTP_DURATION
from sim import calibrate

BUCKETS = tuple(b for b in HTTP_DURATION._upper_bounds if b != float("inf"))


def exposition(samples_by_replica: dict[str, np.ndarray], route="/api/products/{product_id}") -> pd.DataFrame:
    """The rows cm.metrics() would return for replicas that observed these durations (seconds)."""
    rows = []
    for source, samples in samples_by_replica.items():
        registry = CollectorRegistry()
        h = Histogram("http_request_duration_seconds", "d", ["service", "route", "method"], buckets=BUCKETS,
                      registry=registry)
        for x in samples:
            h.labels("product", route, "GET").observe(float(x))
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            for s in family.samples:
                rows.append({"source": source, "kind": "replica", "service": "product", "metric": s.name,
                             "labels": dict(s.labels), "value": float(s.value)})
    return pd.DataFrame(rows, columns=["source", "kind", "service", "metric", "labels", "value"])


def lognormal(mean_s, cv, n, rng):
    sigma2 = np.log1p(cv**2)
    return rng.lognormal(np.log(mean_s) - sigma2 / 2, np.sqrt(sigma2), n)


@pytest.mark.parametrize("mean_ms,cv", [(4.0, 0.8), (12.0, 1.5), (2.0, 0.4)])
def test_service_time_fit_recovers_a_known_lognormal_from_the_services_buckets(mean_ms, cv):
    rng = np.random.default_rng(int(mean_ms * 10 + cv * 100))
    early, late = lognormal(mean_ms / 1000, cv, 3000, rng), lognormal(mean_ms / 1000, cv, 6000, rng)
    before = exposition({"product-0": early[:500], "product-1": early[500:]})
    # product-1 restarted during the window: its counters start again from zero (below their old value).
    after = exposition({"product-0": np.concatenate([early[:500], late[:4000]]), "product-1": late[4000:]})
    fit = calibrate.service_times(before, after)[("product", "/api/products/{product_id}", "GET")]
    assert fit.count == 6000
    assert fit.mean_s == pytest.approx(late.mean(), rel=1e-6)        # sum / count: exact
    assert fit.cv == pytest.approx(cv, rel=0.12)                      # fitted from 13 buckets only
    assert fit.distribution.mean == pytest.approx(fit.mean_s)
    assert sum(fit.bucket_counts) == 6000


def test_fit_is_maximum_likelihood_for_binned_data():
    """Against scipy's own: the fitted (mu, sigma) of exactly binned probabilities is the truth."""
    mu, sigma = np.log(0.006), 0.9
    from scipy import stats
    cdf = stats.norm.cdf((np.log(BUCKETS) - mu) / sigma)
    counts = np.diff(np.concatenate([[0], cdf, [1]])) * 100_000
    got_mu, got_sigma = calibrate.fit_lognormal_binned(BUCKETS, counts)
    assert got_mu == pytest.approx(mu, abs=1e-3) and got_sigma == pytest.approx(sigma, rel=1e-3)


def test_cpu_seconds_per_request_counts_restarts_from_zero():
    cols = ["name", "kind", "pid", "processes", "cpu_s", "rss_mb", "pss_mb"]
    before = pd.DataFrame([["product-0", "replica", 1, 1, 10.0, 0, 0], ["product-1", "replica", 2, 1, 50.0, 0, 0],
                           ["gateway", "gateway", 3, 1, 7.0, 0, 0]], columns=cols)
    after = pd.DataFrame([["product-0", "replica", 1, 1, 13.0, 0, 0], ["product-1", "replica", 9, 1, 1.0, 0, 0],
                          ["gateway", "gateway", 3, 1, 9.0, 0, 0]], columns=cols)
    per = calibrate.cpu_seconds_per_request(before, after, {"product": 2000})
    assert per == {"product": pytest.approx((3.0 + 1.0) / 2000)}
    with pytest.raises(ValueError, match="no replica of that service"):
        calibrate.cpu_seconds_per_request(before, after, {"order": 10})


def test_hop_delay_interval_covers_a_known_shift():
    rng = np.random.default_rng(4)
    direct = rng.gamma(4, 0.5, 400)
    via = rng.gamma(4, 0.5, 400) + 0.8
    est = calibrate.hop_delay_ms(direct, via)
    assert est.low < 0.8 < est.high and est.high - est.low < 0.6


def test_bad_calibration_input_is_refused_with_the_valid_range():
    empty = exposition({"product-0": np.array([0.004] * 10)})
    with pytest.raises(ValueError, match="no endpoint had >= 50 requests"):
        calibrate.service_times(empty, empty)
    one_bucket = exposition({"product-0": np.full(100, 0.004)})
    with pytest.raises(ValueError, match="every observation is in one bucket"):
        calibrate.service_times(exposition({}), one_bucket)
    with pytest.raises(ValueError, match="cm.metrics"):
        calibrate.service_times(pd.DataFrame({"x": [1]}), empty)
    with pytest.raises(ValueError, match="at least 20 each"):
        calibrate.hop_delay_ms([1.0] * 5, [2.0] * 5)


def test_calibrated_model_predicts_a_measured_ps_station():
    """End to end on ground truth: durations measured at light load through the histogram, the
    model run at 60 % load on a shared CPU, compared with the same system simulated from the true
    distribution — the calibrated prediction's mean is within 10 %."""
    import networkx as nx
    rng = np.random.default_rng(21)
    truth = sim.LogNormal(0.005, 1.2)
    fit = calibrate.service_times(exposition({}), exposition({"product-0": lognormal(0.005, 1.2, 4000, rng)}))
    (only,) = fit.values()

    def graph(service):
        g = nx.DiGraph()
        g.add_node("product", service_time=service, servers=10_000)
        return sim.CallGraph(g, cpu=sim.SharedCPU(cores=2))
    predicted = sim.run(graph(only.distribution), seed=2, rate_per_s=120, n_requests=20_000)
    actual = sim.run(graph(truth), seed=3, rate_per_s=120, n_requests=20_000)
    assert predicted.mean_latency_ms.value == pytest.approx(actual.mean_latency_ms.value, rel=0.10)
