"""Product serves from its catalog store when Redis is down, so its readiness does not fail on it.

Before, a `kill -9` of Redis took every product replica out of the endpoints (readiness checked
Redis) although the code treats Redis as an optional cache. Now readiness names Redis but does
not fail on it; reads come from the store; writes answer 503 and change nothing, since a write
whose cached copy cannot be invalidated would be served stale once Redis is back with its data.
"""

from __future__ import annotations

import httpx
import pytest

from services.infra import free_port


@pytest.fixture(scope="module")
def product_without_redis(stack, tmp_path_factory):
    """A product replica whose Redis is down: nothing listens on its port."""
    dead = free_port()
    url = stack.infra.env_for("product")["REDIS_URL"].rsplit(":", 1)[0] + f":{dead}/0"
    svc = stack.add("product-nocache", module="product", extra_env={
        "REDIS_URL": url, "CLOUDMART_STATE_DIR": str(tmp_path_factory.mktemp("product-nocache"))})
    svc.start()
    try:
        svc.wait_ready(timeout_s=60)
        yield svc
    finally:
        svc.stop()
        del stack.services["product-nocache"]


def test_product_is_ready_and_serves_reads_without_redis(product_without_redis):
    base = product_without_redis.url
    ready = httpx.get(base + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"redis": "failed", "catalog": "ok"}
    listing = httpx.get(base + "/api/products", timeout=5)
    assert listing.status_code == 200 and listing.headers["X-Cache"] == "miss"
    items = listing.json()["items"]
    assert items
    one = httpx.get(base + f"/api/products/{items[0]['id']}", timeout=5)
    assert one.status_code == 200 and one.json() == items[0]
    prices = httpx.get(base + "/internal/prices", params={"ids": [items[0]["id"]]}, timeout=5)
    assert prices.json() == {"prices": {items[0]["id"]: items[0]["price_cents"]}}


def test_product_writes_without_redis_are_refused_and_change_nothing(product_without_redis, headers):
    base = product_without_redis.url
    product = httpx.get(base + "/api/products", timeout=5).json()["items"][0]
    patch = httpx.patch(base + f"/api/products/{product['id']}", json={"price_cents": product["price_cents"] + 1},
                        headers=headers["admin"], timeout=5)
    assert patch.status_code == 503, patch.text
    assert "cache" in patch.json()["detail"] and patch.headers["Retry-After"] == "1"
    create = httpx.post(base + "/api/products", headers=headers["admin"], timeout=5, json={
        "id": "NOCACHE1", "name": "Written while the cache is down", "price_cents": 100, "categories": ["misc"]})
    assert create.status_code == 503, create.text
    assert httpx.get(base + f"/api/products/{product['id']}", timeout=5).json() == product
    assert httpx.get(base + "/api/products/NOCACHE1", timeout=5).status_code == 404


def test_product_with_redis_still_reports_and_uses_it(stack):
    ready = httpx.get(stack.url("product") + "/readyz", timeout=5).json()
    assert ready["checks"] == {"redis": "ok", "catalog": "ok"} and ready["status"] == "ready"
    first = httpx.get(stack.url("product") + "/api/products", params={"limit": 3}, timeout=5)
    again = httpx.get(stack.url("product") + "/api/products", params={"limit": 3}, timeout=5)
    assert first.status_code == again.status_code == 200 and again.headers["X-Cache"] == "hit"
