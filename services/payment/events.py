"""Payment consumes ``orders.payment_requested`` (authorize) and ``orders.cancelled`` (refund);
it publishes ``payments.authorized``, ``payments.declined`` and ``payments.refunded``."""

from __future__ import annotations

from fastapi import FastAPI

from services.common import metrics
from services.common.bus import make_event, step_event_id
from services.common.db import add_to_outbox
from services.payment import domain

CONSUMES = ["orders.payment_requested", "orders.cancelled"]
PUBLISHES = ["payments.authorized", "payments.declined", "payments.refunded"]


async def handle(session, event: dict) -> None:
    order_id, payload = event["order_id"], event["payload"]
    if event["type"] == "orders.payment_requested":
        payment, created = await domain.authorize(session, order_id, payload["user_id"], payload["amount_cents"],
                                                  payload["card_number"])
        if not created or payment.status == "void":
            return
        type_ = "payments.authorized" if payment.status == "authorized" else "payments.declined"
        add_to_outbox(session, make_event(type_, order_id, {"amount_cents": payment.amount_cents,
                                                            "reason": payment.reason, "user_id": payment.user_id},
                                          step_event_id(order_id, type_)))
        metrics.saga_step("authorize_payment", "ok" if payment.status == "authorized" else "declined")
    elif event["type"] == "orders.cancelled":
        before = await session.get(domain.Payment, order_id)
        was_authorized = before is not None and before.status == "authorized"
        payment = await domain.cancel(session, order_id, payload.get("user_id", ""))
        if was_authorized and payment.status == "refunded":
            add_to_outbox(session, make_event("payments.refunded", order_id, {"amount_cents": payment.amount_cents,
                                                                              "user_id": payment.user_id},
                                              step_event_id(order_id, "payments.refunded")))
            metrics.saga_step("refund_payment", "ok")


async def start_consumers(app: FastAPI) -> None:
    app.state.bus.subscribe(app.state.db, "payment", "ORDERS", CONSUMES, handle)
