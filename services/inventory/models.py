"""Inventory tables and request/response models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base, utcnow


class Stock(Base):
    """Units per product. Conservation: available + reserved + sold only changes by restocking."""

    __tablename__ = "stock"
    __table_args__ = (CheckConstraint("available >= 0"), CheckConstraint("reserved >= 0"))

    product_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    available: Mapped[int] = mapped_column(default=0)
    reserved: Mapped[int] = mapped_column(default=0)
    sold: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Reservation(Base):
    """What one order holds: ``reserved`` → ``committed`` (sold) or ``released``;
    ``rejected`` (out of stock); ``void`` (cancelled before it was reserved)."""

    __tablename__ = "reservations"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    items: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StockPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_id: str
    available: int
    reserved: int
    sold: int


class StockUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available: int = Field(ge=0, le=10_000_000, description="Units available for sale")
