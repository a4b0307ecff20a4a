"""The monolith's checkout: order → reserve stock → charge → confirm, in ONE transaction,
using the same domain rules as the services (order, inventory, payment, notification)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.common import metrics
from services.common.bus import make_event, step_event_id
from services.common.db import add_to_outbox
from services.inventory import domain as inventory
from services.notification import domain as notification
from services.order import domain as orders
from services.order.models import Order
from services.payment import domain as payment


def _record(session: AsyncSession, type_: str, order: Order, payload: dict) -> None:
    """Keep the same events as the services in the outbox: the order's history. An event no
    in-process handler consumes (``session.info["local_subjects"]``, set by the caller) is
    written as already delivered, so the relay has nothing to do for it."""
    local = session.info.get("local_subjects")
    add_to_outbox(session, make_event(type_, order.id, {"user_id": order.user_id, **payload},
                                      step_event_id(order.id, type_)),
                  delivered=local is not None and type_ not in local)


async def checkout(session: AsyncSession, order: Order) -> Order:
    """Run the whole saga synchronously inside the caller's transaction; the order ends terminal."""
    _record(session, "orders.created", order, {"items": order.lines["items"], "total_cents": order.total_cents})
    outcome = await inventory.reserve(session, order.id, order.lines["items"])
    if outcome != "reserved":
        reason = await inventory.rejection_reason(session, order.id) or "out of stock"
        orders.cancel(order, reason)
        _record(session, "inventory.rejected", order, {"reason": reason})
        metrics.saga_step("reserve_stock", "out_of_stock")
    else:
        _record(session, "inventory.reserved", order, {"items": order.lines["items"]})
        charge, _ = await payment.authorize(session, order.id, order.user_id, order.total_cents, order.card_token or "",
                                            order.card_last4)
        if charge.status == "authorized":
            await inventory.commit(session, order.id)
            orders.confirm(order)
            _record(session, "payments.authorized", order, {"amount_cents": charge.amount_cents})
            metrics.saga_step("confirm_order", "ok")
        else:
            await inventory.release(session, order.id)
            orders.cancel(order, f"payment declined: {charge.reason}")
            _record(session, "payments.declined", order, {"reason": charge.reason})
            metrics.saga_step("cancel_order", "payment_declined")
    await _notify(session, order)
    return order


async def cancel(session: AsyncSession, order: Order, reason: str) -> bool:
    """Cancel, release stock and refund in one transaction; False if already cancelled."""
    if not orders.cancel(order, reason):
        return False
    await inventory.release(session, order.id)
    refunded = await payment.cancel(session, order.id, order.user_id)
    if refunded.status == "refunded":
        _record(session, "payments.refunded", order, {"amount_cents": refunded.amount_cents})
    await _notify(session, order)
    return True


async def _notify(session: AsyncSession, order: Order) -> None:
    kind = "order_confirmed" if order.status == "confirmed" else "order_cancelled"
    _record(session, f"orders.{order.status}", order, {"total_cents": order.total_cents, "reason": order.reason})
    await notification.notify(session, order.user_id, order.id, kind,
                              notification.message_for(kind, order.id, order.total_cents, order.reason))
