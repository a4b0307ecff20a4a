"""The load generator's header columns, simulated users with sticky cohorts, the closed loop and
Zipf popularity, against a local upstream that records what it was sent; per-replica faults on a
live CloudMart."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import numpy as np
import pytest

from cluster.load import assign_cohorts, parse_popularity, run_load, zipf_weights
from local_http import JSONHandler, serve

PRODUCTS = [f"P{i}" for i in range(1, 11)]


@contextlib.contextmanager
def upstream(hold_s: float = 0.0):
    """Answers /api/products with ten ids; every other GET after `hold_s`, with headers naming a
    replica (alternating r0/r1), a cache state and a rate-limit budget. Records each request."""
    seen: list[dict] = []
    lock = threading.Lock()
    state = {"n": 0, "in_flight": 0, "max_in_flight": 0}

    class Handler(JSONHandler):
        def do_GET(self):
            extra = {}
            if self.path != "/api/products":
                with lock:
                    state["n"] += 1
                    n = state["n"]
                    state["in_flight"] += 1
                    state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
                    seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                 "version": self.headers.get("x-cloudmart-version"), "n": n})
                time.sleep(hold_s)
                with lock:
                    state["in_flight"] -= 1
                extra = {"x-replica-id": f"r{n % 2}", "X-Cache": "hit" if n % 3 else "miss",
                         "x-ratelimit-remaining": str(1000 - n)}
            self.send_json({"items": [{"id": p} for p in PRODUCTS]}, headers=extra)

    with serve(Handler) as url:
        yield url, seen, state


def test_response_headers_become_columns():
    with upstream() as (url, seen, _):
        result = run_load(url, 40, 1.0, "read", seed=5)
    df = result.requests
    assert len(df) == len(seen) > 10
    assert set(df["x-replica-id"]) == {"r0", "r1"}
    remaining = sorted(int(v) for v in df["x-ratelimit-remaining"])
    assert remaining == sorted(1000 - s["n"] for s in seen)
    assert set(df["x-cache"]) <= {"hit", "miss"} and (df["x-cache"] == "miss").any()
    assert df["x-service-version"].isna().all()    # not sent: None, not invented


def test_users_each_send_their_own_token_and_stay_in_their_cohort():
    tokens = [f"tok-{i}" for i in range(20)]
    cohorts = {"v2": (0.25, {"x-cloudmart-version": "v2"})}
    with upstream() as (url, seen, _):
        result = run_load(url, 100, 1.5, "read", seed=9, tokens=tokens, cohorts=cohorts)
    df = result.requests
    assert (df.user >= 0).all() and df.user.nunique() >= 15
    # what the server saw: each token always with the same version header (sticky), 5 users in v2
    by_token: dict[str, set] = {}
    for s in seen:
        by_token.setdefault(s["auth"], set()).add(s["version"])
    assert all(len(v) == 1 for v in by_token.values()), by_token
    v2_users = {tok for tok, v in by_token.items() if v == {"v2"}}
    expected = {f"Bearer tokens-{i}".replace("tokens", "tok") for i, (c, _) in
                enumerate(assign_cohorts(20, cohorts, 9)) if c == "v2"}
    assert len(expected) == 5 and v2_users <= expected
    assert set(df.loc[df.cohort == "v2", "user"]) == {i for i, (c, _) in enumerate(assign_cohorts(20, cohorts, 9))
                                                      if c == "v2"} & set(df.user)


def test_closed_loop_keeps_concurrency_requests_in_flight():
    """4 workers, each request held 0.1 s: at most 4 in flight, and Little's law gives a
    throughput of about 4 / 0.1 s = 40 requests/s (less, by the client's own overhead)."""
    with upstream(hold_s=0.1) as (url, seen, state):
        result = run_load(url, None, 2.0, "read", seed=1, concurrency=4)
    s = result.summary
    assert state["max_in_flight"] == 4
    assert s["mode"] == "closed" and s["dropped"] == 0
    assert 0.6 * 40 <= s["throughput_rps"] <= 40 * 1.05, s
    # each worker waits for its answer: request k+4 leaves after request k came back
    assert result.requests.latency_ms.min() >= 100 * 0.9


def test_zipf_popularity_matches_the_law():
    s_exp = 1.2
    with upstream() as (url, seen, _):
        run_load(url, None, 2.5, "read", seed=4, concurrency=8, popularity=f"zipf:{s_exp}")
    n = len(seen)
    assert n >= 300, n
    counts = np.array([sum(1 for x in seen if x["path"] == f"/api/products/{p}") for p in PRODUCTS])
    p = zipf_weights(len(PRODUCTS), s_exp)
    assert p[0] == pytest.approx(1 / sum(k ** -s_exp for k in range(1, 11)))
    # every rank within 5 binomial standard deviations of n * p_k
    sd = np.sqrt(n * p * (1 - p))
    assert (np.abs(counts - n * p) <= 5 * sd + 1).all(), (counts, n * p)
    assert counts[0] > 2 * counts[4]


def test_bad_input_is_a_value_error():
    for kwargs, match in (({"popularity": "zipf:x"}, "popularity"), ({"popularity": "pareto"}, "popularity"),
                          ({"concurrency": 0}, "concurrency"), ({"tokens": []}, "tokens"),
                          ({"think_time_s": -1}, "think_time_s")):
        with pytest.raises(ValueError, match=match):
            run_load("http://127.0.0.1:9", None if "concurrency" in kwargs else 1, 1, "read", **kwargs)
    with pytest.raises(ValueError, match="closed loop"):
        run_load("http://127.0.0.1:9", 5, 1, "read", concurrency=2)
    with pytest.raises(ValueError, match="at most 1"):
        assign_cohorts(10, {"a": (0.7, {}), "b": (0.6, {})}, 0)
    with pytest.raises(ValueError, match="share"):
        assign_cohorts(10, {"a": (2, {})}, 0)
    assert parse_popularity("zipf:0") == 0.0 and parse_popularity("uniform") == 0.0


def _gateway_retries(cm, service: str) -> float:
    """The gateway Envoy's retries towards `service`'s cluster so far."""
    m = cm.metrics()
    rows = m[(m.kind == "gateway") & m.metric.isin(["envoy_cluster_upstream_rq_retry",
                                                     "envoy_cluster_upstream_rq_retry_total"])]
    return float(sum(r.value for r in rows.itertuples() if service in r.labels.get("envoy_cluster_name", "")))


def test_fault_on_one_replica_only(cloudmart, wait_for):
    """product scaled to 2, every request to product-1 fails with 503: the gateway retries a 503
    on another host (Istio's default policy), so every read succeeds and is answered by product-0,
    and the retries show in the gateway's own counters. The retry hides the bad replica."""
    cm = cloudmart.cm
    cm.scale("product", 2)
    try:
        with pytest.raises(ValueError, match="product-7"):
            cm.inject("product", error_rate=1.0, replica="product-7")
        done = cm.inject("product", error_rate=1.0, replica="product-1")
        assert [d["replica"] for d in done] == ["product-1"]
        retries_before = _gateway_retries(cm, "product")
        result = cm.load(20, 3, "read", seed=2)
        df = result.requests
        assert df.ok.all(), df.status.value_counts()
        assert (df["x-replica-id"] == "product-0").all() and len(df) >= 40, df["x-replica-id"].value_counts()
        assert _gateway_retries(cm, "product") - retries_before >= 10, "product-1's 503s were retried"
        cm.reset("product", replica="product-1")
        after = cm.load(20, 2, "read", seed=3).requests
        assert after.ok.all(), after.status.value_counts()
        assert set(after["x-replica-id"]) == {"product-0", "product-1"}, "product-1 answers again"
    finally:
        cm.reset("product")
        cm.scale("product", 1)


def test_users_on_the_live_target(cloudmart):
    result = cloudmart.cm.load(10, 1.5, "read", seed=1, users=3)
    df = result.requests
    assert df.ok.all() and set(df.user) <= {0, 1, 2} and df.user.nunique() >= 2
    assert df["x-service-version"].eq("v1").all()
    with pytest.raises(ValueError, match="users"):
        cloudmart.cm.load(10, 1, "read", users=0)
