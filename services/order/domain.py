"""Order rules shared by the order service and the monolith: pricing, idempotency, creation,
and the saga's state transitions (pending → confirmed | cancelled)."""

from __future__ import annotations

import hashlib
import json
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common import processor
from services.order.models import Order, OrderCreate, OrderPublic


class UnknownProduct(Exception):
    def __init__(self, product_id: str):
        super().__init__(f"unknown product {product_id!r}")
        self.product_id = product_id


class IdempotencyConflict(Exception):
    """The same Idempotency-Key was sent with a different request body."""


def merged_items(body: OrderCreate) -> list[dict]:
    """Items with duplicates merged, in a stable order."""
    merged: dict[str, int] = {}
    for item in body.items:
        merged[item.product_id] = merged.get(item.product_id, 0) + item.quantity
    return [{"product_id": pid, "quantity": qty} for pid, qty in sorted(merged.items())]


def price_lines(items: list[dict], prices_cents: dict[str, int]) -> tuple[list[dict], int]:
    """Order lines with unit prices and the total in cents."""
    lines = []
    for item in items:
        if item["product_id"] not in prices_cents:
            raise UnknownProduct(item["product_id"])
        lines.append({**item, "unit_price_cents": prices_cents[item["product_id"]]})
    total = sum(line["quantity"] * line["unit_price_cents"] for line in lines)
    return lines, total


def request_hash(body: OrderCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()


async def find_by_key(session: AsyncSession, user_id: str, key: str, body: OrderCreate) -> Order | None:
    """The order earlier accepted with this Idempotency-Key, if any."""
    order = await session.scalar(select(Order).where(Order.user_id == user_id, Order.idempotency_key == key))
    if order is not None and order.request_hash != request_hash(body):
        raise IdempotencyConflict("Idempotency-Key was already used with a different request body")
    return order


def new_order(user_id: str, key: str, body: OrderCreate, lines: list[dict], total_cents: int) -> Order:
    return Order(id=str(uuid.uuid4()), user_id=user_id, idempotency_key=key, request_hash=request_hash(body),
                 status="pending", stage="created", lines={"items": lines}, total_cents=total_cents,
                 card_token=processor.tokenize(body.payment.card_number), card_last4=body.payment.card_number[-4:])


def to_public(order: Order) -> OrderPublic:
    return OrderPublic(id=order.id, status=order.status, reason=order.reason, items=order.lines["items"],
                       total_cents=order.total_cents, card_last4=order.card_last4,
                       created_at=order.created_at, updated_at=order.updated_at)


def confirm(order: Order) -> bool:
    """pending → confirmed; False if the order is no longer pending."""
    if order.status != "pending":
        return False
    order.status, order.stage, order.card_number, order.card_token = "confirmed", "paid", None, None
    return True


def cancel(order: Order, reason: str) -> bool:
    """pending/confirmed → cancelled with ``reason``; False if already cancelled."""
    if order.status == "cancelled":
        return False
    order.status, order.reason, order.card_number, order.card_token = "cancelled", reason, None, None
    return True
