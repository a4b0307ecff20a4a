"""``GET /api/orders/{id}/events`` reads only that order's events, however full the streams are."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import nats
from nats.js.client import JetStreamContext
from svc_stack import wait_for

from services.common.bus import Bus


def _noise(nats_url: str, n: int) -> None:
    """``n`` events of other orders on a subject of the ORDERS stream that no service consumes."""
    async def go():
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        try:
            for start in range(0, n, 250):
                await asyncio.gather(*(js.publish(f"orders.audited.{uuid.uuid4()}", json.dumps(
                    {"type": "orders.audited", "order_id": None, "event_id": str(uuid.uuid4()),
                     "occurred_at": "2026-01-01T00:00:00+00:00", "payload": {}}).encode())
                    for _ in range(min(250, n - start))))
        finally:
            await nc.close()
    asyncio.run(go())


def test_order_history_reads_only_that_orders_messages(stack, infra, headers, monkeypatch):
    alice = headers["alice"]
    placed = httpx.post(stack.url("order") + "/api/orders", headers={**alice, "Idempotency-Key": uuid.uuid4().hex},
                        json={"items": [{"product_id": "6E92ZMYYFZ", "quantity": 1}],
                              "payment": {"card_number": "4242424242424242"}})
    order_id = placed.json()["id"]
    url = f"{stack.url('order')}/api/orders/{order_id}/events"
    wait_for(lambda: any(e["type"] == "notifications.sent" for e in httpx.get(url, headers=alice).json()), 60)
    _noise(infra.nats_url, 5000)

    fetched = []
    real_fetch = JetStreamContext.PullSubscription.fetch

    async def counting_fetch(self, *args, **kwargs):
        msgs = await real_fetch(self, *args, **kwargs)
        fetched.extend(msgs)
        return msgs

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", counting_fetch)

    async def history():
        bus = Bus(infra.nats_url, "test-history")
        await bus.connect()
        try:
            started = time.perf_counter()
            events = await bus.history(order_id)
            return events, time.perf_counter() - started
        finally:
            await bus.close()

    events, took_s = asyncio.run(history())
    types = [e["type"] for e in events]
    assert {"orders.created", "inventory.reserved", "orders.payment_requested", "payments.authorized",
            "orders.confirmed", "notifications.sent"} <= set(types), types
    assert len(fetched) == len(events), f"read {len(fetched)} messages for {len(events)} events of the order"
    timings = []
    for _ in range(5):
        t0 = time.perf_counter()
        assert httpx.get(url, headers=alice).status_code == 200
        timings.append(time.perf_counter() - t0)
    print(f"history of one order among >5000 events: bus {took_s*1000:.1f} ms; "
          f"GET median {sorted(timings)[2]*1000:.1f} ms")
