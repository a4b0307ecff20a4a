"""The Caddy gateway in front of the real services: forward_auth, rate limit, routing."""

from __future__ import annotations

import copy
import json

import httpx
import pytest
import redis
from caddy_proc import caddy, echo_server, free_port, received_headers

pytestmark = pytest.mark.live


def test_public_read_passes_anonymously(cloudmart):
    resp = httpx.get(f"{cloudmart.cm.gateway_url}/api/products")
    assert resp.status_code == 200
    assert resp.headers["via"].endswith("Caddy")
    assert resp.headers["x-service-version"] == "v1"


def test_no_token_on_a_protected_route_is_401(cloudmart):
    resp = httpx.get(f"{cloudmart.cm.gateway_url}/api/orders")
    assert resp.status_code == 401
    assert resp.json()["detail"]


def test_bad_token_is_401_at_the_gateway(cloudmart):
    resp = httpx.get(f"{cloudmart.cm.gateway_url}/api/products",
                     headers={"Authorization": "Bearer not.a.jwt"})
    assert resp.status_code == 401   # even on a public route: forward_auth refuses it


def test_valid_token_reaches_the_service_as_that_user(cloudmart):
    resp = cloudmart.cm.get("/api/users/me")
    assert resp.status_code == 200
    assert "alice" in resp.text


def test_over_the_rate_limit_is_429_with_retry_after(cloudmart):
    """Empty bob's token bucket in the real Redis; the gateway must answer 429 + Retry-After."""
    cm = cloudmart.cm
    token = cm.token_for("bob")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{cm.gateway_url}/api/products", headers=headers).status_code == 200
    from services.infra import load_infra

    r = redis.Redis.from_url(load_infra(cloudmart.state_dir).redis_url)   # Redis takes no anonymous client
    key = "ratelimit:sub:bob"
    assert r.exists(key), "the auth service keeps bob's bucket in Redis"
    seconds, micros = r.time()
    r.hset(key, mapping={"tokens": "-100000", "ts": str(seconds + micros / 1e6)})
    try:
        resp = httpx.get(f"{cm.gateway_url}/api/products", headers=headers)
        assert resp.status_code == 429
        assert int(resp.headers["retry-after"]) >= 1
        other = cm.get("/api/products")   # alice has her own bucket
        assert other.status_code == 200
    finally:
        r.delete(key)
    assert httpx.get(f"{cm.gateway_url}/api/products", headers=headers).status_code == 200


def test_a_body_over_the_gateway_limit_is_413_and_never_reaches_a_service(cloudmart):
    from cluster.caddy import MAX_BODY_BYTES

    cm = cloudmart.cm
    big = b'{"username": "' + b"x" * (MAX_BODY_BYTES + 1024) + b'"}'
    resp = httpx.post(f"{cm.gateway_url}/api/users", content=big, headers={"Content-Type": "application/json"},
                      timeout=30)
    assert resp.status_code == 413, resp.text[:200]
    # A body under the limit still reaches the service (and gets its own 422 for a bad field).
    small = httpx.post(f"{cm.gateway_url}/api/users", json={"username": "x" * 1000}, timeout=30)
    assert small.status_code == 422, small.text[:200]


def test_unknown_path_is_404_json(cloudmart):
    resp = httpx.get(f"{cloudmart.cm.gateway_url}/nowhere")
    assert resp.status_code == 404
    assert "no route" in resp.json()["detail"]


def _gateway_in_front_of_an_echo(cloudmart, echo_dial: str, tmp_path):
    """The running gateway's own configuration (read from its admin API), with every route's
    upstream pointed at `echo_dial`; forward_auth still asks the real auth replica."""
    live = httpx.get(f"http://127.0.0.1:{cloudmart.cm.status()['gateway_admin_port']}/config/").json()
    listen, admin = free_port(), free_port()
    config = copy.deepcopy(live)
    config["admin"]["listen"] = f"127.0.0.1:{admin}"
    servers = config["apps"]["http"]["servers"]
    gateway = servers["gateway"]
    for name in [n for n in servers if n != "gateway"]:
        del servers[name]                      # in-cluster listeners: ports the live gateway holds
    gateway["listen"] = [f"127.0.0.1:{listen}"]
    first, *routes = gateway["routes"]
    assert first["handle"][0]["rewrite"]["uri"] == "/api/auth/verify", "route 0 is forward_auth"
    redirected = 0
    for route in routes:
        for handler in route["handle"]:
            if handler.get("handler") == "reverse_proxy":
                handler["upstreams"] = [{"dial": echo_dial}]
                handler.pop("health_checks", None)
                handler["transport"].pop("tls", None)
                redirected += 1
    assert redirected >= 7, "every service route is a reverse_proxy"
    return caddy(config, tmp_path / "echo-gateway", admin, (listen,)), f"http://127.0.0.1:{listen}"


SPOOFED = {"X-User-Id": "admin", "X-User-Roles": "admin", "X-Forwarded-For": "1.2.3.4"}


def test_gateway_replaces_spoofed_user_and_forwarded_for_headers(cloudmart, tmp_path):
    """What a service behind the gateway receives: the user the auth check found, never the client's
    own X-User-Id/X-User-Roles/X-Forwarded-For; an anonymous request carries no user header."""
    with echo_server() as dial:
        proc, url = _gateway_in_front_of_an_echo(cloudmart, dial, tmp_path)
        with proc:
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
