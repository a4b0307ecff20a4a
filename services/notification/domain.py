"""Message texts for order outcomes (shared with the monolith)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.models import Notification


def message_for(kind: str, order_id: str, total_cents: int | None = None, reason: str | None = None) -> str:
    if kind == "order_confirmed":
        amount = f" ({total_cents / 100:.2f} USD)" if total_cents is not None else ""
        return f"Your order {order_id} is confirmed{amount}. Thank you for shopping at CloudMart!"
    return f"Your order {order_id} was cancelled: {reason or 'no reason given'}."


async def notify(session: AsyncSession, user_id: str, order_id: str, kind: str, message: str) -> bool:
    """Store one message per (order, kind); False if it was already stored."""
    result = await session.execute(insert(Notification).values(user_id=user_id, order_id=order_id, kind=kind,
                                                               message=message)
                                   .on_conflict_do_nothing().returning(Notification.id))
    return result.first() is not None
