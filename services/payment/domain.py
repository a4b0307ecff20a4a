"""Payment rules, shared by the payment service and the monolith.

The card processor is simulated (:mod:`services.common.processor`): a payment is made with a
card token, never a card number; the decline test card's token is declined.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.payment.models import Payment

from services.common import processor


async def authorize(session: AsyncSession, order_id: str, user_id: str, amount_cents: int,
                    card_token: str, card_last4: str, refused: str | None = None) -> tuple[Payment, bool]:
    """Charge ``order_id`` once. Returns (payment, created); a second call returns the first
    outcome unchanged, so a retried request never charges twice. ``refused``: decline with this
    reason without asking the processor (the request does not match the order)."""
    existing = await session.get(Payment, order_id, with_for_update=True)
    if existing is not None:
        return existing, False
    reason = refused or processor.decision(card_token)
    payment = Payment(order_id=order_id, user_id=user_id, amount_cents=amount_cents,
                      status="declined" if reason else "authorized", card_last4=card_last4[-4:], reason=reason)
    session.add(payment)
    await session.flush()  # the primary key makes a concurrent second charge fail here
    return payment, True


async def cancel(session: AsyncSession, order_id: str, user_id: str) -> Payment:
    """The order is cancelled: refund an authorized charge, or leave a ``void`` marker so a
    late payment request for this order never charges."""
    payment = await session.get(Payment, order_id, with_for_update=True)
    if payment is None:
        payment = Payment(order_id=order_id, user_id=user_id, status="void", reason="order cancelled before payment")
        session.add(payment)
    elif payment.status == "authorized":
        payment.status = "refunded"
        payment.reason = "order cancelled"
    return payment
