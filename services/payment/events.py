"""Payment consumes ``orders.created`` (what the order costs), ``orders.payment_requested``
(authorize) and ``orders.cancelled`` (refund); it publishes ``payments.authorized``,
``payments.declined`` and ``payments.refunded``.

A payment request is checked against payment's own record of the order (from
``orders.created``): the same customer and the same amount, else it is declined, so a request
carrying another amount never charges it. A request for an order payment has not seen created
yet is retried for a while (events of one order can overtake each other between consumers),
then declined. A cancellation refunds only the order's own customer's payment.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import FastAPI
from sqlalchemy.dialects.postgresql import insert

from services.common import metrics, processor
from services.common.bus import make_event, step_event_id
from services.common.db import add_to_outbox
from services.common.logging import get_logger
from services.payment import domain
from services.payment.models import ExpectedCharge

log = get_logger("cloudmart.payment.events")

CONSUMES = ["orders.created", "orders.payment_requested", "orders.cancelled"]
PUBLISHES = ["payments.authorized", "payments.declined", "payments.refunded"]

#: How long a payment request may wait for its order's ``orders.created`` before it is declined.
UNKNOWN_ORDER_GRACE_S = 120.0


class OrderNotSeenYet(Exception):
    """The request came before its order's ``orders.created``: redeliver it later."""


def _age_s(event: dict) -> float:
    try:
        occurred = datetime.fromisoformat(event.get("occurred_at") or "")
    except (TypeError, ValueError):
        return float("inf")
    if occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - occurred).total_seconds()


async def _check_request(session, order_id: str, payload: dict, event: dict) -> tuple[int, str | None]:
    """(amount to charge, refusal reason or None) for a payment request."""
    expected = await session.get(ExpectedCharge, order_id)
    if expected is None:
        if _age_s(event) < UNKNOWN_ORDER_GRACE_S:
            raise OrderNotSeenYet(order_id)
        return 0, "payment requested for an order that was never created"
    if payload.get("user_id") != expected.user_id:
        return expected.amount_cents, "payment requested by another customer than the order's"
    if payload.get("amount_cents") != expected.amount_cents:
        log.warning("payment request amount differs from the order's", extra={"fields": {
            "order_id": order_id, "requested": payload.get("amount_cents"), "order": expected.amount_cents}})
        return expected.amount_cents, "amount does not match the order"
    return expected.amount_cents, None


async def handle(session, event: dict) -> None:
    order_id, payload = event["order_id"], event["payload"]
    if event["type"] == "orders.created":
        total = payload.get("total_cents")
        if isinstance(total, int) and not isinstance(total, bool) and isinstance(payload.get("user_id"), str):
            await session.execute(insert(ExpectedCharge).values(
                order_id=order_id, user_id=payload["user_id"], amount_cents=total).on_conflict_do_nothing())
    elif event["type"] == "orders.payment_requested":
        amount, refused = await _check_request(session, order_id, payload, event)
        card_token, card_last4 = payload.get("card_token"), str(payload.get("card_last4", ""))
        if card_token is None and isinstance(payload.get("card_number"), str):  # a request of an older release
            card_token, card_last4 = processor.tokenize(payload["card_number"]), payload["card_number"][-4:]
        payment, created = await domain.authorize(session, order_id, payload.get("user_id", ""), amount,
                                                  str(card_token or ""), card_last4, refused=refused)
        if not created or payment.status == "void":
            return
        type_ = "payments.authorized" if payment.status == "authorized" else "payments.declined"
        add_to_outbox(session, make_event(type_, order_id, {"amount_cents": payment.amount_cents,
                                                            "reason": payment.reason, "user_id": payment.user_id},
                                          step_event_id(order_id, type_)))
        metrics.saga_step("authorize_payment", "ok" if payment.status == "authorized" else "declined")
    elif event["type"] == "orders.cancelled":
        before = await session.get(domain.Payment, order_id)
        if before is not None and before.user_id != payload.get("user_id"):
            log.warning("cancellation for another customer's payment ignored", extra={"fields": {"order_id": order_id}})
            return
        was_authorized = before is not None and before.status == "authorized"
        payment = await domain.cancel(session, order_id, payload.get("user_id", ""))
        if was_authorized and payment.status == "refunded":
            add_to_outbox(session, make_event("payments.refunded", order_id, {"amount_cents": payment.amount_cents,
                                                                              "user_id": payment.user_id},
                                              step_event_id(order_id, "payments.refunded")))
            metrics.saga_step("refund_payment", "ok")


async def start_consumers(app: FastAPI) -> None:
    app.state.bus.subscribe(app.state.db, "payment", "ORDERS", CONSUMES, handle)
