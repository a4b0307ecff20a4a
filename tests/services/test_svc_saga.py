"""The checkout saga end to end on real processes: happy path and both compensations."""

from __future__ import annotations

import uuid

import httpx
import pytest
from svc_stack import wait_for

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


def place(stack, headers, items, card=GOOD_CARD, key=None):
    key = key or str(uuid.uuid4())
    return httpx.post(stack.url("order") + "/api/orders", headers={**headers, "Idempotency-Key": key},
                      json={"items": items, "payment": {"card_number": card}})


def terminal(stack, headers, order_id):
    def check():
        order = httpx.get(f"{stack.url('order')}/api/orders/{order_id}", headers=headers).json()
        return order if order["status"] in ("confirmed", "cancelled") else None
    return wait_for(check, timeout_s=30)


def stock(stack, product_id):
    return httpx.get(f"{stack.url('inventory')}/api/inventory/{product_id}").json()


def test_happy_path_confirms_charges_and_notifies(stack, headers):
    before = stock(stack, "OLJCESPC7Z")
    response = place(stack, headers["alice"], [{"product_id": "OLJCESPC7Z", "quantity": 2}])
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    order = terminal(stack, headers["alice"], body["id"])
    assert order["status"] == "confirmed"
    assert order["total_cents"] == 2 * 1999
    after = stock(stack, "OLJCESPC7Z")
    assert after["available"] == before["available"] - 2
    assert after["sold"] == before["sold"] + 2
    payments = httpx.get(stack.url("payment") + "/api/payments", headers=headers["alice"]).json()
    mine = [p for p in payments if p["order_id"] == body["id"]]
    assert len(mine) == 1 and mine[0]["status"] == "authorized" and mine[0]["amount_cents"] == 2 * 1999
    notes = wait_for(lambda: [n for n in httpx.get(stack.url("notification") + "/api/notifications",
                                                   headers=headers["alice"]).json() if n["order_id"] == body["id"]])
    assert notes[0]["kind"] == "order_confirmed"
    history = httpx.get(f"{stack.url('order')}/api/orders/{body['id']}/events", headers=headers["alice"]).json()
    types = [e["type"] for e in history]
    for expected in ("orders.created", "inventory.reserved", "orders.payment_requested",
                     "payments.authorized", "orders.confirmed"):
        assert expected in types
    assert all(e["traceparent"].split("-")[1] == history[0]["traceparent"].split("-")[1] for e in history), \
        "one trace id end to end"
    assert all("card_number" not in e["payload"] for e in history)


def test_declined_card_cancels_and_releases_stock(stack, headers):
    before = stock(stack, "66VCHSJNUP")
    response = place(stack, headers["alice"], [{"product_id": "66VCHSJNUP", "quantity": 3}], card=DECLINED_CARD)
    assert response.status_code == 202
    order = terminal(stack, headers["alice"], response.json()["id"])
    assert order["status"] == "cancelled"
    assert "declined" in order["reason"]
    wait_for(lambda: stock(stack, "66VCHSJNUP") == before)


def test_out_of_stock_cancels_without_charge(stack, headers):
    admin = headers["admin"]
    put = httpx.put(stack.url("inventory") + "/api/inventory/LIMITED001", headers=admin, json={"available": 1})
    assert put.status_code == 200, put.text
    response = place(stack, headers["bob"], [{"product_id": "LIMITED001", "quantity": 2}])
    order = terminal(stack, headers["bob"], response.json()["id"])
    assert order["status"] == "cancelled"
    assert "out of stock" in order["reason"]
    assert stock(stack, "LIMITED001")["available"] == 1
    payment = httpx.get(f"{stack.url('payment')}/api/payments/{order['id']}", headers=headers["bob"])
    assert payment.status_code == 404


def test_same_idempotency_key_twice_gives_one_order_and_one_charge(stack, headers):
    key = str(uuid.uuid4())
    first = place(stack, headers["alice"], [{"product_id": "6E92ZMYYFZ", "quantity": 1}], key=key)
    second = place(stack, headers["alice"], [{"product_id": "6E92ZMYYFZ", "quantity": 1}], key=key)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    terminal(stack, headers["alice"], first.json()["id"])
    payments = httpx.get(stack.url("payment") + "/api/payments", headers=headers["alice"]).json()
    assert len([p for p in payments if p["order_id"] == first.json()["id"]]) == 1
    orders = httpx.get(stack.url("order") + "/api/orders", headers=headers["alice"], params={"limit": 500}).json()
    assert len([o for o in orders if o["id"] == first.json()["id"]]) == 1
    changed = place(stack, headers["alice"], [{"product_id": "6E92ZMYYFZ", "quantity": 2}], key=key)
    assert changed.status_code == 409


def test_customer_cancel_refunds_and_restocks(stack, headers):
    before = stock(stack, "9SIQT8TOJO")
    response = place(stack, headers["alice"], [{"product_id": "9SIQT8TOJO", "quantity": 4}])
    order = terminal(stack, headers["alice"], response.json()["id"])
    assert order["status"] == "confirmed"
    cancel = httpx.post(f"{stack.url('order')}/api/orders/{order['id']}/cancel", headers=headers["alice"])
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    again = httpx.post(f"{stack.url('order')}/api/orders/{order['id']}/cancel", headers=headers["alice"])
    assert again.status_code == 409
    wait_for(lambda: httpx.get(f"{stack.url('payment')}/api/payments/{order['id']}",
                               headers=headers["alice"]).json()["status"] == "refunded")
    wait_for(lambda: stock(stack, "9SIQT8TOJO") == before)


def test_relay_publishes_outbox_rows_left_behind_by_a_crash(stack, infra):
    """A row committed but never published (its process died first) is sent by the relay."""
    import asyncio
    import json

    import psycopg

    from services.common.bus import Bus, make_event

    marker = f"relay-{uuid.uuid4()}"
    # A subject of the order service's own stream (the only one its NATS user may publish on)
    # that no consumer handles.
    event = make_event("orders.audited", marker, {"user_id": "alice", "kind": "test", "message": "left behind"})
    with psycopg.connect(infra.database_url("order"), autocommit=True) as conn:
        conn.execute("INSERT INTO outbox (event_id, subject, data, created_at) VALUES (%s, %s, %s, now() - interval '10 s')",
                     (event["event_id"], event["type"], json.dumps(event)))

    async def history():
        bus = Bus(infra.nats_url, "test-relay")
        await bus.connect()
        try:
            return await bus.history(marker, streams=["ORDERS"])
        finally:
            await bus.close()
    found = wait_for(lambda: asyncio.run(history()), timeout_s=20, interval_s=0.5)
    assert [e["event_id"] for e in found] == [event["event_id"]]
    with psycopg.connect(infra.database_url("order")) as conn:
        sent_at = conn.execute("SELECT sent_at FROM outbox WHERE event_id = %s", (event["event_id"],)).fetchone()[0]
    assert sent_at is not None


@pytest.mark.parametrize("target", ["services", "monolith"])
def test_concurrent_orders_for_scarce_stock_never_oversell(stack, headers, request, target):
    """12 parallel orders for 5 units: exactly 5 confirmed, the rest cancelled as out of stock."""
    import concurrent.futures

    if target == "monolith":
        base = request.getfixturevalue("monolith").url
        inventory_base = base
    else:
        base, inventory_base = stack.url("order"), stack.url("inventory")
    pid = "LIMITED001"
    assert httpx.put(f"{inventory_base}/api/inventory/{pid}", headers=headers["admin"],
                     json={"available": 5}).status_code == 200
    before = httpx.get(f"{inventory_base}/api/inventory/{pid}").json()

    def order(_):
        r = httpx.post(base + "/api/orders", timeout=30,
                       headers={**headers["bob"], "Idempotency-Key": str(uuid.uuid4())},
                       json={"items": [{"product_id": pid, "quantity": 1}], "payment": {"card_number": GOOD_CARD}})
        assert r.status_code == 202, r.text
        return r.json()["id"]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        ids = list(pool.map(order, range(12)))

    def finals():
        got = [httpx.get(f"{base}/api/orders/{i}", headers=headers["bob"]).json() for i in ids]
        return got if all(o["status"] != "pending" for o in got) else None
    orders = wait_for(finals, timeout_s=60, interval_s=0.3)
    confirmed = [o for o in orders if o["status"] == "confirmed"]
    assert len(confirmed) == 5
    assert all("out of stock" in o["reason"] for o in orders if o["status"] == "cancelled")
    after = wait_for(lambda: (s := httpx.get(f"{inventory_base}/api/inventory/{pid}").json())["reserved"] == 0 and s)
    assert after["available"] == 0 and after["sold"] == before["sold"] + 5


def _consumed(stack, service: str, subject: str) -> dict[str, float]:
    """events_consumed_total of a service for one subject, by outcome (from its /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(stack.url(service) + "/metrics", headers=stack.scrape_headers()).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "events_consumed_total" and sample.labels.get("subject") == subject:
                out[sample.labels["outcome"]] = out.get(sample.labels["outcome"], 0) + sample.value
    return out


def test_a_redelivered_event_moves_stock_once(stack, infra):
    """The same saga event delivered twice (different Nats-Msg-Id, so JetStream's de-duplication
    does not catch it, as after a publisher's retry past the duplicate window): the inventory
    consumer's processed-event record sees the second as a duplicate and the stock moves once,
    for the reservation and for its release."""
    import asyncio
    import json

    import nats

    from services.common.bus import make_event

    pid, quantity = "OLJCESPC7Z", 3
    order_id = f"redelivery-{uuid.uuid4()}"
    created = make_event("orders.created", order_id, {"user_id": "alice", "total_cents": 3 * 1999,
                                                      "items": [{"product_id": pid, "quantity": quantity}]})
    cancelled = make_event("orders.cancelled", order_id, {"user_id": "alice", "reason": "test", "total_cents": 0})

    async def publish_twice(event):
        nc = await nats.connect(infra.nats_url)
        try:
            js = nc.jetstream()
            for _ in range(2):
                ack = await js.publish(event["type"], json.dumps(event).encode(),
                                       headers={"Nats-Msg-Id": str(uuid.uuid4())})
                assert not ack.duplicate, "each copy reaches the stream"
        finally:
            await nc.close()

    def handled(subject, before):
        now = _consumed(stack, "inventory", subject)
        done = sum(now.values()) - sum(before.values())
        return now if done >= 2 else None

    before_stock = stock(stack, pid)
    before = _consumed(stack, "inventory", "orders.created")
    asyncio.run(publish_twice(created))
    after = wait_for(lambda: handled("orders.created", before), timeout_s=30)
    assert after.get("ok", 0) - before.get("ok", 0) == 1, (before, after)
    assert after.get("duplicate", 0) - before.get("duplicate", 0) == 1, (before, after)
    reserved = stock(stack, pid)
    assert reserved["available"] == before_stock["available"] - quantity
    assert reserved["reserved"] == before_stock["reserved"] + quantity

    before = _consumed(stack, "inventory", "orders.cancelled")
    asyncio.run(publish_twice(cancelled))
    after = wait_for(lambda: handled("orders.cancelled", before), timeout_s=30)
    assert after.get("ok", 0) - before.get("ok", 0) == 1, (before, after)
    assert after.get("duplicate", 0) - before.get("duplicate", 0) == 1, (before, after)
    released = stock(stack, pid)
    assert (released["available"], released["reserved"]) == (before_stock["available"], before_stock["reserved"])
