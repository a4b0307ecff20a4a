"""The Envoy gateway in front of the real services: JWT check, rate limit, body limit, routing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import pytest
from echo_proc import echo_server, free_port, received_headers

pytestmark = pytest.mark.live


def test_public_read_passes_anonymously(cloudmart):
    resp = httpx.get(f"{cloudmart.cm.gateway_url}/api/products")
    assert resp.status_code == 200
    # Envoy's own marks (it sends no Via): its server header and the upstream's time.
    assert resp.headers["server"] == "envoy"
    assert int(resp.headers["x-envoy-upstream-service-time"]) >= 0
    assert resp.headers["x-service-version"] == "v1"


def test_no_token_on_a_protected_route_is_401(cloudmart):
    resp = httpx.get(f"{cloudmart.cm.gateway_url}/api/orders")
    assert resp.status_code == 401
    assert resp.json()["detail"]


def test_bad_token_is_401_at_the_gateway(cloudmart):
    resp = httpx.get(f"{cloudmart.cm.gateway_url}/api/products",
                     headers={"Authorization": "Bearer not.a.jwt"})
    assert resp.status_code == 401   # even on a public route: Envoy's jwt_authn refuses it
    assert resp.json()["detail"]


def test_valid_token_reaches_the_service_as_that_user(cloudmart):
    resp = cloudmart.cm.get("/api/users/me")
    assert resp.status_code == 200
    assert "alice" in resp.text


def _live_endpoints(cloudmart) -> dict[str, list[str]]:
    """Every Service's ready replicas (`127.0.0.1:port`), from the running CloudMart."""
    from cluster import topology

    topo = topology.load()
    deployments = cloudmart.cm.status()["deployments"]
    return {svc: [f"127.0.0.1:{r['port']}" for r in deployments[dep]["replicas"] if r["ready"]]
            for svc, dep in topo.services.items()}


@contextlib.contextmanager
def _own_gateway(tmp_path, endpoints: dict[str, list[str]], **render_kw):
    """A gateway Envoy of its own, rendered by the same `render()` as the live one."""
    from cluster import topology
    from cluster.dataplane.local import Gateway, render

    port = free_port()
    gateway = Gateway(tmp_path / "own-gateway")
    plane = render(topology.load(), endpoints=endpoints, port=port, **render_kw)
    asyncio.run(gateway.start(plane))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run(gateway.stop())


def test_the_live_gateway_limits_each_user_with_envoy(cloudmart):
    """The running gateway's Envoy has the per-user token bucket (keyed by the verified token's
    subject) at the auth Deployment's rate, and counts what it let through."""
    cm = cloudmart.cm
    cm.get("/api/products")
    stats = httpx.Client(transport=httpx.HTTPTransport(uds=cm.status()["gateway_admin_socket"])).get(
        "http://admin/stats?format=json").json()["stats"]
    names = {s["name"]: s.get("value") for s in stats if "name" in s}
    assert names.get("gateway_per_user.http_local_rate_limit.enabled", 0) > 0, sorted(
        n for n in names if "rate" in n)[:10]


def test_over_the_rate_limit_is_429_with_retry_after(cloudmart, tmp_path):
    """A gateway rendered like the live one, with a bucket of 3 at 1/s per user: bob's fourth
    request in a row is 429 + Retry-After (JSON), alice keeps her own bucket, and bob is let
    through again once his bucket refilled."""
    cm = cloudmart.cm
    bob = {"Authorization": f"Bearer {cm.token_for('bob')}"}
    with _own_gateway(tmp_path, _live_endpoints(cloudmart), rate=(1.0, 3.0)) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            codes = [client.get("/api/products", headers=bob).status_code for _ in range(3)]
            assert codes == [200, 200, 200]
            over = client.get("/api/products", headers=bob)
            assert over.status_code == 429, over.text
            assert int(over.headers["retry-after"]) >= 1
            assert "rate limit" in over.json()["detail"]
            alice = client.get("/api/products", headers={"Authorization": f"Bearer {cm.token}"})
            assert alice.status_code == 200, "alice has her own bucket"
            time.sleep(float(over.headers["retry-after"]) + 0.2)
            assert client.get("/api/products", headers=bob).status_code == 200


def test_no_ready_replica_is_a_json_503_never_an_empty_502(cloudmart, tmp_path):
    """Envoy's own answer when a Service has no ready replica, or its only replica refuses the
    connection (killed, not yet out of the endpoints): JSON 503 with Retry-After."""
    endpoints = _live_endpoints(cloudmart)
    dead = free_port()                     # nothing listens there: connection refused
    endpoints["product"] = [f"127.0.0.1:{dead}"]
    endpoints["order"] = []
    with _own_gateway(tmp_path, endpoints) as url:
        for path in ("/api/products", "/api/orders"):
            resp = httpx.get(url + path, timeout=10)
            assert resp.status_code == 503, (path, resp.status_code, resp.text)
            assert resp.headers["content-type"] == "application/json"
            assert "no ready replica" in resp.json()["detail"] and resp.headers["retry-after"] == "1"


def test_a_body_over_the_gateway_limit_is_413_and_never_reaches_a_service(cloudmart):
    from cluster.dataplane.local import MAX_BODY_BYTES

    cm = cloudmart.cm
    big = b'{"username": "' + b"x" * (MAX_BODY_BYTES + 1024) + b'"}'
    resp = httpx.post(f"{cm.gateway_url}/api/users", content=big, headers={"Content-Type": "application/json"},
                      timeout=30)
    assert resp.status_code == 413, resp.text[:200]
    assert "limit" in resp.json()["detail"]
    # A body under the limit still reaches the service (and gets its own 422 for a bad field).
    small = httpx.post(f"{cm.gateway_url}/api/users", json={"username": "x" * 1000}, timeout=30)
    assert small.status_code == 422, small.text[:200]


def test_unknown_path_is_404_json(cloudmart):
    resp = httpx.get(f"{cloudmart.cm.gateway_url}/nowhere")
    assert resp.status_code == 404
    assert "no route" in resp.json()["detail"]
    assert resp.headers["content-type"] == "application/json"


SPOOFED = {"X-User-Id": "admin", "X-User-Roles": "admin", "X-Forwarded-For": "1.2.3.4"}


def test_gateway_replaces_spoofed_user_and_forwarded_for_headers(cloudmart, tmp_path):
    """What a service behind the gateway receives: the user the auth check found, never the client's
    own X-User-Id/X-User-Roles/X-Forwarded-For; an anonymous request carries no user header."""
    with echo_server() as dial:
        # The live gateway's config with every Service but auth (whose JWKS Envoy reads) on the echo.
        endpoints = {svc: eps if svc == "auth" else [dial] for svc, eps in _live_endpoints(cloudmart).items()}
        with _own_gateway(tmp_path, endpoints) as url:
            signed_in = httpx.get(f"{url}/api/orders", headers={
                "Authorization": f"Bearer {cloudmart.cm.token}", **SPOOFED})
            assert signed_in.status_code == 200, signed_in.text
            seen = received_headers(signed_in)
            assert seen["x-user-id"] == ["alice"]
            assert seen["x-user-roles"] == ["customer"]
            assert seen["x-forwarded-for"] == ["127.0.0.1"]
            assert json.loads(signed_in.text)["path"] == "/api/orders"

            anonymous = httpx.get(f"{url}/api/products", headers=SPOOFED)
            assert anonymous.status_code == 200, anonymous.text
            seen = received_headers(anonymous)
            assert "x-user-id" not in seen and "x-user-roles" not in seen, seen
            assert seen["x-forwarded-for"] == ["127.0.0.1"]

            # The gateway leaves "who may see orders" to the service (it answers 401 without a
            # token): an anonymous request reaches it with no user header, whatever it claims.
            anonymous = httpx.get(f"{url}/api/orders", headers=SPOOFED)
            assert anonymous.status_code == 200, anonymous.text
            seen = received_headers(anonymous)
            assert "x-user-id" not in seen and "x-user-roles" not in seen, seen
