"""Payment rules, shared by the payment service and the monolith.

The card processor is simulated by fixed test cards (as payment providers' sandboxes do):
``4000000000000002`` is declined, any other card that passed validation is authorized.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.payment.models import Payment

DECLINED_CARDS = {"4000000000000002": "card declined"}


def processor_decision(card_number: str) -> str | None:
    """None if the processor authorizes ``card_number``, else the decline reason."""
    return DECLINED_CARDS.get(card_number)


async def authorize(session: AsyncSession, order_id: str, user_id: str, amount_cents: int,
                    card_number: str, refused: str | None = None) -> tuple[Payment, bool]:
    """Charge ``order_id`` once. Returns (payment, created); a second call returns the first
    outcome unchanged, so a retried request never charges twice. ``refused``: decline with this
    reason without asking the processor (the request does not match the order)."""
    existing = await session.get(Payment, order_id, with_for_update=True)
    if existing is not None:
        return existing, False
    reason = refused or processor_decision(card_number)
    payment = Payment(order_id=order_id, user_id=user_id, amount_cents=amount_cents,
                      status="declined" if reason else "authorized", card_last4=card_number[-4:], reason=reason)
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
