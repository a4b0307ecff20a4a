"""Card numbers do not outlive the request that carried them: events, the outbox, the order and
payment rows and the logs hold the processor's token and the last four digits only."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import psycopg
from svc_stack import wait_for

from services.common.bus import Bus

GOOD, DECLINED = "4242424242424242", "4000000000000002"


def _place(stack, headers, card: str) -> str:
    response = httpx.post(stack.url("order") + "/api/orders", headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                          json={"items": [{"product_id": "9SIQT8TOJO", "quantity": 1}], "payment": {"card_number": card}})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _dump(conn, query: str, *args) -> str:
    return json.dumps([list(map(str, row)) for row in conn.execute(query, args).fetchall()])


def test_no_card_number_in_events_outbox_rows_or_logs(stack, infra, headers):
    ids = {card: _place(stack, headers["alice"], card) for card in (GOOD, DECLINED)}
    final = {card: wait_for(lambda oid=oid: (o := httpx.get(f"{stack.url('order')}/api/orders/{oid}",
                                                             headers=headers["alice"]).json())["status"] != "pending" and o, 60)
             for card, oid in ids.items()}
    assert final[GOOD]["status"] == "confirmed" and final[DECLINED]["status"] == "cancelled"
    assert final[DECLINED]["reason"] == "payment declined: card declined"  # the token still decides

    async def history():
        bus = Bus(infra.nats_url, "test-card-data")
        await bus.connect()
        try:
            return [await bus.history(oid) for oid in ids.values()]
        finally:
            await bus.close()
    events = json.dumps(asyncio.run(history()))
    assert "card_token" in events and "tok_" in events
    with psycopg.connect(infra.database_url("order")) as conn:
        stored = _dump(conn, "SELECT data FROM outbox WHERE data->>'order_id' = ANY(%s)", list(ids.values()))
        stored += _dump(conn, "SELECT * FROM orders WHERE id = ANY(%s)", list(ids.values()))
    with psycopg.connect(infra.database_url("payment")) as conn:
        stored += _dump(conn, "SELECT * FROM payments WHERE order_id = ANY(%s)", list(ids.values()))
    logs = "".join(svc.log_path.read_text(errors="replace") for svc in stack.services.values())
    for card in (GOOD, DECLINED):
        assert card not in events, "a card number is in the event store"
        assert card not in stored, "a card number is in a table"
        assert card not in logs, "a card number is in a log"
        assert card[-4:] in stored  # the last four digits are kept, for the customer


def test_card_numbers_left_by_an_older_release_are_erased_on_start(stack, infra):
    order_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
    legacy = {"type": "orders.payment_requested", "order_id": order_id, "event_id": event_id,
              "occurred_at": "2026-01-01T00:00:00+00:00",
              "payload": {"user_id": "alice", "amount_cents": 549, "card_number": GOOD}}
    with psycopg.connect(infra.database_url("order"), autocommit=True) as conn:
        conn.execute("INSERT INTO outbox (event_id, subject, data, created_at, sent_at) "
                     "VALUES (%s, %s, %s, now(), now())", (event_id, legacy["type"], json.dumps(legacy)))
    replica = stack.add("order-upgrade", module="order")
    replica.start()
    try:
        replica.wait_ready()
        with psycopg.connect(infra.database_url("order")) as conn:
            data = conn.execute("SELECT data FROM outbox WHERE event_id = %s", (event_id,)).fetchone()[0]
        assert "card_number" not in data["payload"] and data["payload"]["amount_cents"] == 549
    finally:
        replica.stop()
        del stack.services["order-upgrade"]
