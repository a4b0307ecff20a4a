"""The Caddy gateway in front of the real services: forward_auth, rate limit, routing."""

from __future__ import annotations

import time

import httpx
import pytest
import redis

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
    port = cm.status()["infra"]["redis"]["port"]
    r = redis.Redis(host="127.0.0.1", port=port)
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


def test_unknown_path_is_404_json(cloudmart):
    resp = httpx.get(f"{cloudmart.cm.gateway_url}/nowhere")
    assert resp.status_code == 404
    assert "no route" in resp.json()["detail"]


def test_gateway_sets_forwarded_for_and_user_headers(cloudmart):
    """The service sees the user the gateway's auth check found (X-User-Id), not a spoofed one."""
    resp = cloudmart.cm.get("/api/users/me", headers={"Authorization": f"Bearer {cloudmart.cm.token}",
                                                      "X-User-Id": "admin"})
    assert resp.status_code == 200 and "alice" in resp.text
