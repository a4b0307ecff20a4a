"""`cluster.connect()` and the handle's observation methods on a live CloudMart."""

from __future__ import annotations

import uuid

import pytest

from cluster import connect


pytestmark = pytest.mark.live


def test_connect_finds_the_running_target(cloudmart, monkeypatch):
    monkeypatch.setenv("CLOUDMART_STATE_DIR", str(cloudmart.state_dir))
    cm = connect()
    assert cm.gateway_url == f"http://127.0.0.1:{cloudmart.port}"
    assert cm.status()["ready"]
    assert cm.get("/api/users/me").json()["username"] == "alice"
    admin = connect(user="admin")
    assert admin.get("/api/orders").status_code == 200


def test_connect_without_start_fails_clearly(tmp_path):
    from cluster.local import TargetError

    with pytest.raises(TargetError, match="not up"):
        connect(state_dir=str(tmp_path / "none"), start=False)
    with pytest.raises(ValueError, match="target"):
        connect(target="nomad")


def test_checkout_and_event_history(cloudmart, wait_for):
    cm = cloudmart.cm
    pid = cm.get("/api/products").json()["items"][0]["id"]
    resp = cm.post("/api/orders", json={"items": [{"product_id": pid, "quantity": 1}],
                                        "payment": {"card_number": "4242424242424242"}},
                   headers={"Idempotency-Key": str(uuid.uuid4())})
    assert resp.status_code == 202
    order_id = resp.json()["id"]
    order = wait_for(lambda: (o := cm.get(f"/api/orders/{order_id}").json())["status"] != "pending" and o, 30)
    assert order["status"] == "confirmed"
    events = cm.events("orders", order_id=order_id)
    types = [e["type"] for e in events]
    assert types[0] == "orders.created" and all(e["order_id"] == order_id for e in events)
    assert any(e["order_id"] == order_id for e in cm.events("payments"))
    with pytest.raises(ValueError, match="stream"):
        cm.events("shipping")


def test_load_is_open_loop_and_returns_data(cloudmart):
    result = cloudmart.cm.load(rps=20, seconds=3, scenario="browse", seed=3)
    df = result.requests
    assert {"t_s", "latency_ms", "status", "ok"} <= set(df.columns)
    assert result.summary["error_rate"] == 0.0
    assert 30 <= len(df) <= 100            # Poisson(60): far outside this would be a bug
    assert df["t_s"].max() < 3.0 and df["t_s"].is_monotonic_increasing
    assert result.summary["p50_ms"] <= result.summary["p95_ms"] <= result.summary["p99_ms"]
    # Same seed, same arrival schedule: the load does not adapt to response times.
    again = cloudmart.cm.load(rps=20, seconds=3, scenario="browse", seed=3)
    assert list(again.requests["t_s"].round(9)) == list(df["t_s"].round(9))


def test_metrics_cover_every_replica_and_the_gateway(cloudmart):
    cm = cloudmart.cm
    cm.get("/api/products")
    df = cm.metrics()
    sources = set(df["source"])
    for name, dep in cm.status()["deployments"].items():
        for rep in dep["replicas"]:
            assert rep["id"] in sources
    assert "gateway" in sources
    red = df[(df["metric"] == "http_requests_total") & (df["service"] == "product")]
    assert red["value"].sum() > 0
    # The gateway's rows are Envoy's own stats, names and labels as Envoy writes them.
    gateway = df[df["source"] == "gateway"]
    served = gateway[(gateway["metric"] == "envoy_cluster_upstream_rq_total")
                     & gateway["labels"].map(lambda l: l.get("envoy_cluster_name") == "outbound|80||product")]
    assert served["value"].sum() > 0, sorted(set(gateway["metric"]))[:20]
    assert (gateway["metric"] == "envoy_http_downstream_rq_total").any()


def test_usage_lists_every_process(cloudmart):
    df = cloudmart.cm.usage()
    kinds = set(df["kind"])
    assert {"supervisor", "gateway", "replica", "infra"} <= kinds
    assert (df["rss_mb"] > 0).all() and (df["cpu_s"] >= 0).all()
    assert set(df[df["kind"] == "infra"]["name"]) >= {"postgres", "redis", "nats"}
