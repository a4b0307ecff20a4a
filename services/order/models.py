"""Order table and request/response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import BigInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base, utcnow
from services.common.types import Identifier, Quantity

OrderStatus = Literal["pending", "confirmed", "cancelled"]


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    stage: Mapped[str] = mapped_column(String(32), default="created")  # saga progress while pending
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    lines: Mapped[dict[str, Any]]
    total_cents: Mapped[int] = mapped_column(BigInteger)  # up to 50 lines × 1000 units × 10⁸ cents
    card_number: Mapped[str | None] = mapped_column(String(19), default=None)  # older releases only; never written
    card_token: Mapped[str | None] = mapped_column(String(64), default=None)  # the processor's; erased once final
    card_last4: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        digit = int(ch)
        if i % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: Identifier
    quantity: Quantity


class PaymentMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")

    card_number: str = Field(pattern=r"^[0-9]{12,19}$", description="Test cards: 4242424242424242 (succeeds), "
                                                                     "4000000000000002 (declined)")

    @field_validator("card_number")
    @classmethod
    def _luhn(cls, value: str) -> str:
        if not luhn_ok(value):
            raise ValueError("card number fails the Luhn check")
        return value


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[OrderItem], Field(min_length=1, max_length=50)]
    payment: PaymentMethod


class OrderLine(BaseModel):
    product_id: str
    quantity: int
    unit_price_cents: int


class OrderAccepted(BaseModel):
    id: str
    status: OrderStatus


class OrderPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: OrderStatus
    reason: str | None
    items: list[OrderLine]
    total_cents: int
    card_last4: str
    created_at: datetime
    updated_at: datetime


class EventPublic(BaseModel):
    type: str
    order_id: str | None
    event_id: str
    occurred_at: str
    traceparent: str | None = None
    payload: dict[str, Any]
