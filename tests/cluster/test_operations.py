"""Scaling, killing, canary weights and fault injection on a live CloudMart."""

from __future__ import annotations

import collections
import threading
import time

import httpx
import pytest

from cluster.load import run_load


pytestmark = pytest.mark.live


def _background_browse(cm, seconds: float, rps: float = 10.0):
    box = {}

    def run():
        box["result"] = run_load(cm.gateway_url, rps, seconds, "browse", token=cm.token, seed=7)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def _upstreams(cm, cluster: str = "outbound|80||product") -> set[str]:
    """The hosts the gateway's Envoy balances a cluster over (its admin API, a Unix socket)."""
    admin = httpx.Client(transport=httpx.HTTPTransport(uds=cm.status()["gateway_admin_socket"]))
    data = admin.get("http://envoy-admin/clusters?format=json").json()
    hosts = set()
    for c in data["cluster_statuses"]:
        if c["name"] == cluster:
            for h in c.get("host_statuses", []):
                sock = h["address"]["socket_address"]
                hosts.add(f"{sock['address']}:{sock['port_value']}")
    return hosts


def test_scale_up_kill_and_scale_down_lose_no_request(cloudmart, wait_for):
    cm = cloudmart.cm
    thread, box = _background_browse(cm, seconds=12)
    try:
        time.sleep(1)
        dep = cm.scale("product", 2)
        assert dep["ready"] == 2
        ports = {f"127.0.0.1:{r['port']}" for r in cm.status()["deployments"]["product"]["replicas"]}
        wait_for(lambda: ports <= _upstreams(cm), 10)   # both replicas become upstreams of the gateway
        time.sleep(1)
        killed = cm.kill("product")
        wait_for(lambda: cm.status()["deployments"]["product"]["ready"] == 2 and sum(
            r["restarts"] for r in cm.status()["deployments"]["product"]["replicas"]) >= 1, 30)
        time.sleep(1)
        cm.scale("product", 1)
        assert len(cm.status()["deployments"]["product"]["replicas"]) == 1
    finally:
        thread.join()
    result = box["result"]
    assert killed["killed"].startswith("product-")
    assert result.summary["sent"] > 50
    failed = result.requests[~result.requests["ok"]]
    assert failed.empty, f"failed requests while scaling/killing: {failed.to_dict('records')[:5]}"


def test_canary_weights_split_traffic_in_proportion(cloudmart):
    cm = cloudmart.cm
    try:
        cm.canary("product", 25)
        versions = collections.Counter()
        with httpx.Client(base_url=cm.gateway_url) as client:
            for _ in range(200):
                versions[client.get("/api/products").headers.get("x-service-version")] += 1
            share = versions["v2"] / sum(versions.values())
            assert 0.15 <= share <= 0.35, versions
            ab = {client.get("/api/products", headers={"x-cloudmart-version": "v2"}).headers["x-service-version"]
                  for _ in range(20)}
            assert ab == {"v2"}, "the A/B header always reaches the canary"
        cm.canary("product", 0)
        with httpx.Client(base_url=cm.gateway_url) as client:
            after = {client.get("/api/products").headers["x-service-version"] for _ in range(40)}
        assert after == {"v1"}
    finally:
        cm.canary("product", 0)


def test_canary_weight_changes_drop_no_request(cloudmart):
    cm = cloudmart.cm
    thread, box = _background_browse(cm, seconds=6, rps=15)
    try:
        for weight in (10, 50, 90, 0):
            time.sleep(1.2)
            cm.canary("product", weight)
    finally:
        thread.join()
        cm.canary("product", 0)
    assert box["result"].requests["ok"].all(), box["result"].summary


def _faults(cm, service: str) -> dict[str, dict]:
    """`GET /admin/fault` of every ready replica of the service, by replica id."""
    headers = cm._admin_headers()
    out = {}
    for name in cm._deployments_of(service):
        for rep in cm.status()["deployments"][name]["replicas"]:
            if rep["ready"]:
                resp = httpx.get(f"http://127.0.0.1:{rep['port']}/admin/fault", headers=headers, timeout=10)
                assert resp.status_code == 200, resp.text
                out[rep["id"]] = resp.json()
    return out


def test_inject_latency_and_errors_then_reset(cloudmart):
    cm = cloudmart.cm
    pid = cm.get("/api/products").json()["items"][0]["id"]
    cm.scale("product", 2)
    try:
        try:
            injected = cm.inject("product", latency_ms=200)
            # every ready replica of product (two stable ones, and the canary's if it runs)
            assert {"product-0", "product-1"} <= {r["replica"] for r in injected} == set(_faults(cm, "product"))
            assert all(f == {"latency_ms": 200, "error_rate": 0.0} for f in _faults(cm, "product").values())
            start = time.perf_counter()
            assert cm.get(f"/api/products/{pid}").status_code == 200
            assert (time.perf_counter() - start) * 1000 >= 200       # a lower bound: never flaky
            cm.inject("product", error_rate=1.0)
            codes = [cm.get(f"/api/products/{pid}").status_code for _ in range(10)]
            assert all(code >= 500 for code in codes), codes        # every replica fails every request
        finally:
            cm.reset("product")
        faults = _faults(cm, "product")
        assert {"product-0", "product-1"} <= set(faults)
        assert all(f == {"latency_ms": 0, "error_rate": 0.0} for f in faults.values()), faults
        codes = [cm.get(f"/api/products/{pid}").status_code for _ in range(10)]
        assert codes == [200] * 10
    finally:
        cm.scale("product", 1)


def test_bad_operations_raise_clear_errors(cloudmart):
    cm = cloudmart.cm
    from cluster.local import TargetError

    with pytest.raises(TargetError, match="unknown deployment"):
        cm.scale("warehouse", 1)
    with pytest.raises(ValueError, match="replicas"):
        cm.scale("product", -1)
    with pytest.raises(TargetError, match="no canary"):
        cm.canary("order", 10)
    with pytest.raises(ValueError, match="error_rate"):
        cm.inject("product", error_rate=1.5)


def test_a_crashed_gateway_is_started_again(cloudmart, wait_for):
    import os
    import signal

    cm = cloudmart.cm
    old_pid = cm.status()["gateway_pid"]
    os.kill(old_pid, signal.SIGKILL)

    def serving_again():
        if cm.status()["gateway_pid"] == old_pid:
            return False
        try:
            return httpx.get(f"{cm.gateway_url}/api/products", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(serving_again, 30)


def test_checkouts_during_an_order_restart_get_json_503_with_retry_after_never_502(cloudmart, wait_for):
    """The only order replica is killed while checkouts keep coming: until it is ready again, the
    gateway answers each one with its JSON 503 and Retry-After (no endpoint, or the retries ran
    out), never an empty 502; afterwards checkouts are accepted again."""
    import uuid

    cm = cloudmart.cm
    pid = cm.get("/api/products").json()["items"][0]["id"]
    body = {"items": [{"product_id": pid, "quantity": 1}], "payment": {"card_number": "4242424242424242"}}
    answers: list[httpx.Response] = []
    killed = cm.kill("order")
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=cm.gateway_url, headers={"Authorization": f"Bearer {cm.token}"}, timeout=20) as client:
        while time.monotonic() < deadline:
            resp = client.post("/api/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
            answers.append(resp)
            if resp.status_code == 202 and any(a.status_code == 503 for a in answers):
                break
            time.sleep(0.05)
    codes = collections.Counter(a.status_code for a in answers)
    assert killed["killed"].startswith("order-")
    assert 502 not in codes and set(codes) <= {202, 503}, codes
    unavailable = [a for a in answers if a.status_code == 503]
    assert unavailable, f"no checkout met the restart: {codes}"
    for a in unavailable:
        assert a.headers["content-type"].startswith("application/json") and a.headers["retry-after"] == "1"
        assert "order" in a.json()["detail"]
    assert answers[-1].status_code == 202, codes
    wait_for(lambda: cm.status()["deployments"]["order"]["ready"] == 1, 30)
