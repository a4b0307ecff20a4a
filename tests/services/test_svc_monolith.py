"""The monolith: the same public API in one process and one database, synchronous checkout."""

from __future__ import annotations

import uuid

import httpx
import pytest
from svc_stack import get_token, wait_for


GOOD_CARD, DECLINED_CARD = "4242424242424242", "4000000000000002"


@pytest.fixture(scope="module")
def mh(monolith):
    return {name: {"Authorization": f"Bearer {get_token(monolith.url, name)}"} for name in ("alice", "bob", "admin")}


def _order(base, headers, items, card=GOOD_CARD, key=None):
    return httpx.post(base + "/api/orders", headers={**headers, "Idempotency-Key": key or str(uuid.uuid4())},
                      json={"items": items, "payment": {"card_number": card}})


def test_monolith_serves_every_public_path_of_the_services(stack, monolith):
    mono_paths = set(httpx.get(monolith.url + "/openapi.json").json()["paths"])
    for name in ("auth", "user", "product", "inventory", "order", "payment", "notification"):
        service_paths = {p for p in httpx.get(stack.url(name) + "/openapi.json").json()["paths"] if p.startswith("/api/")}
        assert service_paths <= mono_paths, f"monolith lacks {service_paths - mono_paths}"


def test_monolith_checkout_is_terminal_at_once(monolith, mh):
    base = monolith.url
    before = httpx.get(base + "/api/inventory/OLJCESPC7Z").json()
    placed = _order(base, mh["alice"], [{"product_id": "OLJCESPC7Z", "quantity": 2}])
    assert placed.status_code == 202 and placed.json()["status"] == "confirmed"
    order = httpx.get(f"{base}/api/orders/{placed.json()['id']}", headers=mh["alice"]).json()
    assert order["total_cents"] == 2 * 1999
    after = httpx.get(base + "/api/inventory/OLJCESPC7Z").json()
    assert after["available"] == before["available"] - 2 and after["sold"] == before["sold"] + 2
    pay = httpx.get(f"{base}/api/payments/{order['id']}", headers=mh["alice"]).json()
    assert pay["status"] == "authorized" and pay["amount_cents"] == order["total_cents"]
    notes = httpx.get(base + "/api/notifications", headers=mh["alice"]).json()
    assert any(n["order_id"] == order["id"] and n["kind"] == "order_confirmed" for n in notes)
    history = [e["type"] for e in httpx.get(f"{base}/api/orders/{order['id']}/events", headers=mh["alice"]).json()]
    assert history[0] == "orders.created" and "orders.confirmed" in history
    # Someone else's order is invisible.
    assert httpx.get(f"{base}/api/orders/{order['id']}", headers=mh["bob"]).status_code == 404


def test_monolith_compensations_and_idempotency(monolith, mh):
    base = monolith.url
    before = httpx.get(base + "/api/inventory/66VCHSJNUP").json()
    declined = _order(base, mh["alice"], [{"product_id": "66VCHSJNUP", "quantity": 1}], card=DECLINED_CARD)
    assert declined.json()["status"] == "cancelled"
    assert httpx.get(base + "/api/inventory/66VCHSJNUP").json() == before
    httpx.put(base + "/api/inventory/LIMITED001", headers=mh["admin"], json={"available": 1})
    short = _order(base, mh["bob"], [{"product_id": "LIMITED001", "quantity": 2}])
    assert short.json()["status"] == "cancelled"
    reason = httpx.get(f"{base}/api/orders/{short.json()['id']}", headers=mh["bob"]).json()["reason"]
    assert "out of stock" in reason
    key = str(uuid.uuid4())
    first = _order(base, mh["alice"], [{"product_id": "6E92ZMYYFZ", "quantity": 1}], key=key)
    second = _order(base, mh["alice"], [{"product_id": "6E92ZMYYFZ", "quantity": 1}], key=key)
    assert first.json() == second.json()
    payments = httpx.get(base + "/api/payments", headers=mh["alice"], params={"limit": 500}).json()
    assert len([p for p in payments if p["order_id"] == first.json()["id"]]) == 1
    cancelled = httpx.post(f"{base}/api/orders/{first.json()['id']}/cancel", headers=mh["alice"])
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert httpx.get(f"{base}/api/payments/{first.json()['id']}", headers=mh["alice"]).json()["status"] == "refunded"


def test_monolith_auth_products_users(monolith, mh):
    base = monolith.url
    assert httpx.get(base + "/api/products", params={"q": "mug"}).json()["items"][0]["id"] == "6E92ZMYYFZ"
    assert httpx.post(base + "/api/products", headers=mh["alice"], json={"name": "x", "price_cents": 1}).status_code == 403
    pid = "M" + uuid.uuid4().hex[:8].upper()
    assert httpx.post(base + "/api/products", headers=mh["admin"],
                      json={"id": pid, "name": "Mono Lamp", "price_cents": 700}).status_code == 201
    assert httpx.patch(f"{base}/api/products/{pid}", headers=mh["admin"], json={"price_cents": 800}).json()["price_cents"] == 800
    assert httpx.get(f"{base}/api/products/{pid}").json()["price_cents"] == 800
    name = "mono" + uuid.uuid4().hex[:6]
    assert httpx.post(base + "/api/users", json={"username": name, "password": "mono-pass-1"}).status_code == 201

    def login():
        r = httpx.post(base + "/api/auth/token", data={"grant_type": "password", "username": name, "password": "mono-pass-1"})
        return r.status_code == 200
    wait_for(login, timeout_s=10)
    verify = httpx.get(base + "/api/auth/verify", headers=mh["bob"])
    assert verify.headers["x-user-id"] == "bob"
    ready = httpx.get(base + "/readyz").json()
    assert ready["status"] == "ready" and set(ready["checks"]) >= {"postgres", "redis"}
