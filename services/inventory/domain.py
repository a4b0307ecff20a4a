"""Stock rules, written once and used by the inventory service and by the monolith.

Every change is a conditional UPDATE inside the caller's transaction, so concurrent orders
never oversell and a rolled-back transaction changes nothing.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.demo import CATALOG
from services.inventory.models import Reservation, Stock


class OutOfStock(Exception):
    """Not enough units of a product."""

    def __init__(self, product_id: str):
        super().__init__(f"out of stock: {product_id}")
        self.product_id = product_id


def merge_items(items: list[dict]) -> dict[str, int]:
    """[{product_id, quantity}, …] → {product_id: total quantity}, sorted by id (lock order)."""
    merged: dict[str, int] = {}
    for item in items:
        merged[item["product_id"]] = merged.get(item["product_id"], 0) + int(item["quantity"])
    return dict(sorted(merged.items()))


async def seed_stock(session: AsyncSession) -> None:
    """Initial stock for the demo catalog (only where a product has no row yet)."""
    rows = [{"product_id": p["id"], "available": p["initial_stock"], "reserved": 0, "sold": 0} for p in CATALOG]
    await session.execute(insert(Stock).values(rows).on_conflict_do_nothing())


async def reserve(session: AsyncSession, order_id: str, items: list[dict]) -> str:
    """Reserve every item for ``order_id`` or none. Returns the reservation status:
    ``reserved``, ``rejected`` (raises nothing; the reason is in the reservation) or the status
    it already had (a cancelled-before-reserved order stays ``void``)."""
    existing = await session.get(Reservation, order_id, with_for_update=True)
    if existing is not None:
        return existing.status
    wanted = merge_items(items)
    try:
        async with session.begin_nested():
            for product_id, quantity in wanted.items():
                result = await session.execute(
                    update(Stock).where(Stock.product_id == product_id, Stock.available >= quantity)
                    .values(available=Stock.available - quantity, reserved=Stock.reserved + quantity)
                    .returning(Stock.product_id))
                if result.first() is None:
                    raise OutOfStock(product_id)
    except OutOfStock as exc:
        session.add(Reservation(order_id=order_id, items={"items": wanted, "reason": str(exc)}, status="rejected"))
        return "rejected"
    session.add(Reservation(order_id=order_id, items={"items": wanted}, status="reserved"))
    return "reserved"


async def rejection_reason(session: AsyncSession, order_id: str) -> str | None:
    reservation = await session.get(Reservation, order_id)
    return reservation.items.get("reason") if reservation else None


async def release(session: AsyncSession, order_id: str) -> bool:
    """Give back what ``order_id`` holds (reserved or sold). True if stock changed.
    An order cancelled before its reservation leaves a ``void`` marker so it is never reserved."""
    reservation = await session.get(Reservation, order_id, with_for_update=True)
    if reservation is None:
        session.add(Reservation(order_id=order_id, items={"items": {}}, status="void"))
        return False
    if reservation.status not in ("reserved", "committed"):
        return False
    column = Stock.reserved if reservation.status == "reserved" else Stock.sold
    for product_id, quantity in reservation.items["items"].items():
        await session.execute(update(Stock).where(Stock.product_id == product_id)
                              .values({Stock.available: Stock.available + quantity, column: column - quantity}))
    reservation.status = "released"
    return True


async def commit(session: AsyncSession, order_id: str) -> bool:
    """The order is confirmed: its reserved units are sold. True if stock changed."""
    reservation = await session.get(Reservation, order_id, with_for_update=True)
    if reservation is None or reservation.status != "reserved":
        return False
    for product_id, quantity in reservation.items["items"].items():
        await session.execute(update(Stock).where(Stock.product_id == product_id)
                              .values(reserved=Stock.reserved - quantity, sold=Stock.sold + quantity))
    reservation.status = "committed"
    return True


async def list_stock(session: AsyncSession, limit: int, offset: int) -> list[Stock]:
    return list((await session.scalars(select(Stock).order_by(Stock.product_id).limit(limit).offset(offset))).all())


async def set_available(session: AsyncSession, product_id: str, available: int) -> Stock:
    """Restock (admin): set the available units, creating the row for a new product."""
    await session.execute(insert(Stock).values(product_id=product_id, available=available, reserved=0, sold=0)
                          .on_conflict_do_update(index_elements=[Stock.product_id], set_={"available": available}))
    return await session.get(Stock, product_id, populate_existing=True)
