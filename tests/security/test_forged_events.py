"""Forged events on the broker cannot underpay, refund-and-keep, or grant a role.

The broker lets each service publish only its own stream's subjects; these tests publish with
the credentials of the service that owns the subject (a leaked credential, or a bug in that
service), which the broker rightly accepts, so what they check is the next layer: each consumer
checks an event against its own data.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

import httpx
import nats
from svc_stack import get_token, wait_for

from services.common.bus import step_event_id
from services.common.passwords import hash_password

GOOD_CARD = "4242424242424242"
WATCH = "1YMWWN1N4O"  # 10999 cents


def publish(nats_url: str, subject: str, order_id: str | None, payload: dict, event_id: str | None = None) -> None:
    event = {"type": subject, "order_id": order_id, "event_id": event_id or str(uuid.uuid4()),
             "occurred_at": datetime.now(timezone.utc).isoformat(), "traceparent": None, "payload": payload}

    async def go():
        nc = await nats.connect(nats_url, connect_timeout=3)
        try:
            await nc.jetstream().publish(subject, json.dumps(event).encode(), headers={"Nats-Msg-Id": event["event_id"]})
        finally:
            await nc.close()

    asyncio.run(go())


def place(stack, headers, quantity: int = 5) -> str:
    response = httpx.post(stack.url("order") + "/api/orders", headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                          json={"items": [{"product_id": WATCH, "quantity": quantity}],
                                "payment": {"card_number": GOOD_CARD}})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def order(stack, headers, order_id: str) -> dict:
    return httpx.get(f"{stack.url('order')}/api/orders/{order_id}", headers=headers).json()


def payment(stack, headers, order_id: str) -> dict | None:
    response = httpx.get(f"{stack.url('payment')}/api/payments/{order_id}", headers=headers)
    return response.json() if response.status_code == 200 else None


def terminal(stack, headers, order_id: str) -> dict:
    return wait_for(lambda: (o := order(stack, headers, order_id))["status"] != "pending" and o, 60)


def test_payment_request_with_a_forged_amount_never_charges_it(stack, infra, headers):
    """The attack: right after placing an order, publish its payment request with 1 cent, under
    the step's own event id, so the broker even drops the real request as a duplicate."""
    alice = headers["alice"]
    outcomes = []
    for event_id in (lambda oid: step_event_id(oid, "orders.payment_requested"), lambda oid: None):
        order_id = place(stack, alice)
        publish(infra.nats_url_for("order"), "orders.payment_requested", order_id,
                {"user_id": "alice", "amount_cents": 1, "card_number": GOOD_CARD}, event_id(order_id))
        final = terminal(stack, alice, order_id)
        charge = wait_for(lambda: payment(stack, alice, order_id), 30)
        outcomes.append((final["status"], charge["status"], charge["amount_cents"], final["total_cents"]))
        if final["status"] == "confirmed":
            assert charge["status"] == "authorized" and charge["amount_cents"] == final["total_cents"] == 5 * 10999
        else:
            assert charge["status"] == "declined" and "amount does not match" in final["reason"], (final, charge)
    assert all(amount != 1 or status != "authorized" for _, status, amount, _ in outcomes), outcomes


def test_forged_cancellation_cannot_refund_a_confirmed_order_that_stays_confirmed(stack, infra, headers):
    alice = headers["alice"]
    order_id = place(stack, alice, quantity=1)
    assert terminal(stack, alice, order_id)["status"] == "confirmed"
    publish(infra.nats_url_for("order"), "orders.cancelled", order_id, {"user_id": "alice", "reason": "forged", "total_cents": 10999})
    # Whatever payment does with the forged event, money back and a confirmed order never go together.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        charge, final = payment(stack, alice, order_id), order(stack, alice, order_id)
        if charge["status"] == "refunded" and final["status"] == "cancelled":
            break
        time.sleep(0.2)
    charge, final = payment(stack, alice, order_id), order(stack, alice, order_id)
    assert not (charge["status"] == "refunded" and final["status"] == "confirmed"), (charge, final)
    assert final["status"] == "cancelled" and final["reason"] == "payment refunded", final


def test_forged_cancellation_for_another_customers_order_refunds_nothing(stack, infra, headers):
    order_id = place(stack, headers["bob"], quantity=1)
    assert terminal(stack, headers["bob"], order_id)["status"] == "confirmed"
    publish(infra.nats_url_for("order"), "orders.cancelled", order_id, {"user_id": "alice", "reason": "forged", "total_cents": 1})
    time.sleep(3)  # the consumer is at most a second behind; nothing may change
    assert payment(stack, headers["bob"], order_id)["status"] == "authorized"
    assert order(stack, headers["bob"], order_id)["status"] == "confirmed"


def test_forged_registration_event_grants_no_login_and_no_role(stack, infra):
    auth = stack.url("auth") + "/api/auth/token"
    # A user nobody registered, announced with a known hash and the admin role.
    ghost = "ghost" + uuid.uuid4().hex[:6]
    publish(infra.nats_url_for("user"), "users.registered", None,
            {"username": ghost, "password_hash": hash_password("ghost-password-1"), "roles": ["admin"]})
    # A real customer, then a forged event giving them admin.
    mallory = "mallory" + uuid.uuid4().hex[:6]
    assert httpx.post(stack.url("user") + "/api/users",
                      json={"username": mallory, "password": "mallory-pass-1"}).status_code == 201
    publish(infra.nats_url_for("user"), "users.registered", None,
            {"username": mallory, "password_hash": hash_password("other-pass-2"), "roles": ["admin"]})
    time.sleep(2)  # time enough for any consumer of the event
    ghost_login = httpx.post(auth, data={"grant_type": "password", "username": ghost, "password": "ghost-password-1"},
                             headers={"X-Forwarded-For": "198.51.100.10"})
    assert ghost_login.status_code == 401, ghost_login.text
    token = get_token(stack.url("auth"), mallory, "mallory-pass-1")
    claims = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[1] + "==="))
    assert claims["roles"] == ["customer"]
    forged_password = httpx.post(auth, data={"grant_type": "password", "username": mallory, "password": "other-pass-2"},
                                 headers={"X-Forwarded-For": "198.51.100.10"})
    assert forged_password.status_code == 401
    assert httpx.get(stack.url("order") + "/api/orders?limit=1",
                     headers={"Authorization": f"Bearer {token}"}).json() == []  # a customer sees only their own
