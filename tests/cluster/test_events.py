"""`cm.events(stream)` reads every stream the services create, from the real JetStream."""

from __future__ import annotations

import asyncio
import uuid

import nats
import pytest

from cluster.handle import STREAMS, _read_stream
from services.common.bus import STREAMS as BUS_STREAMS

pytestmark = pytest.mark.live


def test_the_handle_knows_every_stream_the_services_create():
    assert set(STREAMS) == {name.lower() for name in BUS_STREAMS}
    assert {"orders", "inventory", "payments", "notifications", "users"} <= set(STREAMS)


def test_each_stream_holds_the_orders_events_after_a_checkout(cloudmart, wait_for):
    cm = cloudmart.cm
    pid = cm.get("/api/products").json()["items"][0]["id"]
    resp = cm.post("/api/orders", json={"items": [{"product_id": pid, "quantity": 1}],
                                        "payment": {"card_number": "4242424242424242"}},
                   headers={"Idempotency-Key": str(uuid.uuid4())})
    assert resp.status_code == 202, resp.text
    order_id = resp.json()["id"]
    order = wait_for(lambda: (o := cm.get(f"/api/orders/{order_id}").json())["status"] != "pending" and o, 30)
    assert order["status"] == "confirmed"
    # notifications.sent follows orders.confirmed asynchronously.
    wait_for(lambda: cm.events("notifications", order_id=order_id), 30)
    expected = {"orders": {"orders.created", "orders.payment_requested", "orders.confirmed"},
                "inventory": {"inventory.reserved"},
                "payments": {"payments.authorized"},
                "notifications": {"notifications.sent"}}
    for stream, types in expected.items():
        events = cm.events(stream.upper() if stream == "payments" else stream, order_id=order_id)
        assert types <= {e["type"] for e in events}, (stream, events)
        assert all(e["order_id"] == order_id and e["type"].startswith(f"{stream}.") for e in events)
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs)


def test_users_stream_has_the_registration(cloudmart, wait_for):
    username = f"evt-{uuid.uuid4().hex[:10]}"
    resp = cloudmart.cm.post("/api/users", json={"username": username, "password": "correct-horse-1"})
    assert resp.status_code == 201, resp.text
    events = wait_for(lambda: [e for e in cloudmart.cm.events("users")
                               if e["type"] == "users.registered" and e["payload"].get("username") == username], 30)
    assert len(events) == 1


def test_unknown_stream_names_the_valid_ones(cloudmart):
    with pytest.raises(ValueError, match="valid are orders, inventory, payments, notifications, users"):
        cloudmart.cm.events("shipping")


def test_an_empty_stream_reads_as_no_events(cloudmart):
    """A stream with no message yet has first_seq = last_seq = 0; asking JetStream for sequence 0
    is a 400, which is what `events()` did on a fresh CloudMart before the first notification."""
    from services.infra import load_infra

    url = load_infra(cloudmart.state_dir).nats_url   # the administrator: it may create streams
    name = f"EMPTY_{uuid.uuid4().hex[:8].upper()}"

    async def scenario():
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
        try:
            empty = await _read_stream(url, name, None, 100)
            await js.publish(f"{name.lower()}.x", b'{"type": "x", "order_id": "o1"}')
            await js.purge_stream(name)
            purged = await _read_stream(url, name, None, 100)
            await js.publish(f"{name.lower()}.x", b'{"type": "x", "order_id": "o2"}')
            one = await _read_stream(url, name, None, 100)
        finally:
            await js.delete_stream(name)
            await nc.close()
        return empty, purged, one

    empty, purged, one = asyncio.run(scenario())
    assert empty == [] and purged == []
    assert [e["order_id"] for e in one] == ["o2"]
