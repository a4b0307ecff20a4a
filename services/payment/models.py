"""Payment tables and response models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base, utcnow


class Payment(Base):
    """At most one payment per order (primary key = order id): no double charge.

    ``authorized`` → ``refunded``; ``declined``; ``void`` (the order was cancelled before any charge)."""

    __tablename__ = "payments"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16))
    card_last4: Mapped[str] = mapped_column(String(4), default="")
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExpectedCharge(Base):
    """What an order costs, as the order service announced when it created the order
    (``orders.created``; the first announcement wins). A payment request must match it: the
    amount charged is this one, never the amount a request carries."""

    __tablename__ = "expected_charges"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    order_id: str
    amount_cents: int
    status: str
    card_last4: str
    reason: str | None
    created_at: datetime
    updated_at: datetime
