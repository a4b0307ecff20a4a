"""The order service orchestrates the checkout saga.

Publishes (outbox): ``orders.created`` → inventory reserves; ``orders.payment_requested`` →
payment authorizes; ``orders.confirmed`` → inventory commits, notification; ``orders.cancelled``
→ inventory releases, payment refunds, notification.
Consumes: ``inventory.reserved``/``inventory.rejected``, ``payments.authorized``/``payments.declined``,
and ``payments.refunded``: a refund the order did not ask for (its order is not cancelled) cancels
the order, so money back and goods kept never go together.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.common import metrics, processor
from services.common.bus import make_event, step_event_id
from services.common.db import add_to_outbox
from services.common.logging import get_logger
from services.order import domain
from services.order.models import Order

log = get_logger("cloudmart.order.events")

PUBLISHES = ["orders.created", "orders.payment_requested", "orders.confirmed", "orders.cancelled"]
CONSUMES = {"INVENTORY": ["inventory.reserved", "inventory.rejected"],
            "PAYMENTS": ["payments.authorized", "payments.declined", "payments.refunded"]}


def order_created(order: Order) -> dict:
    return make_event("orders.created", order.id, {"user_id": order.user_id, "items": order.lines["items"],
                                                   "total_cents": order.total_cents},
                      step_event_id(order.id, "orders.created"))


def order_cancelled(order: Order) -> dict:
    return make_event("orders.cancelled", order.id, {"user_id": order.user_id, "reason": order.reason,
                                                     "total_cents": order.total_cents},
                      step_event_id(order.id, "orders.cancelled"))


def _card_token(order: Order) -> str | None:
    """The order's card token (an order placed by an older release kept the number: tokenise it)."""
    if order.card_token is None and order.card_number:
        order.card_token, order.card_number = processor.tokenize(order.card_number), None
    return order.card_token


async def handle(session, event: dict) -> None:
    order = await session.get(Order, event["order_id"], with_for_update=True)
    if order is None:
        return  # not one of ours
    kind = event["type"]
    if kind == "inventory.reserved":
        if order.status == "pending" and order.stage == "created":
            order.stage = "reserved"
            add_to_outbox(session, make_event(
                "orders.payment_requested", order.id,
                {"user_id": order.user_id, "amount_cents": order.total_cents, "card_token": _card_token(order),
                 "card_last4": order.card_last4},
                step_event_id(order.id, "orders.payment_requested")))
    elif kind == "inventory.rejected":
        if order.status == "pending" and domain.cancel(order, event["payload"].get("reason") or "out of stock"):
            add_to_outbox(session, order_cancelled(order))
            metrics.saga_step("cancel_order", "out_of_stock")
    elif kind == "payments.authorized":
        if domain.confirm(order):
            add_to_outbox(session, make_event("orders.confirmed", order.id,
                                              {"user_id": order.user_id, "total_cents": order.total_cents,
                                               "items": order.lines["items"]},
                                              step_event_id(order.id, "orders.confirmed")))
            metrics.saga_step("confirm_order", "ok")
    elif kind == "payments.refunded":
        if order.status != "cancelled" and domain.cancel(order, "payment refunded"):
            log.warning("refund without a cancellation: order cancelled", extra={"fields": {"order_id": order.id}})
            add_to_outbox(session, order_cancelled(order))
            metrics.saga_step("cancel_order", "refunded")
    elif kind == "payments.declined":
        reason = f"payment declined: {event['payload'].get('reason') or 'declined'}"
        if order.status == "pending" and domain.cancel(order, reason):
            add_to_outbox(session, order_cancelled(order))
            metrics.saga_step("cancel_order", "payment_declined")


async def start_consumers(app: FastAPI) -> None:
    bus, db = app.state.bus, app.state.db
    bus.subscribe(db, "order-inventory", "INVENTORY", CONSUMES["INVENTORY"], handle)
    bus.subscribe(db, "order-payments", "PAYMENTS", CONSUMES["PAYMENTS"], handle)
