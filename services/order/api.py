"""Order routes under /api/orders. The ownership rule is one dependency (``OwnedOrder``):
a customer reading someone else's order gets 404, exactly as for a missing one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.common.auth import CurrentUser
from services.common.bus import publish_committed
from services.common.db import SessionDep, add_to_outbox
from services.common.logging import get_logger
from services.common.types import IdPath
from services.order import domain, events
from services.order.catalog import CatalogUnavailable
from services.order.models import EventPublic, Order, OrderAccepted, OrderCreate, OrderPublic

log = get_logger("cloudmart.order")
router = APIRouter(prefix="/api/orders", tags=["orders"])

IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128,
                                       pattern=r"^[\x21-\x7e]+$",
                                       description="Unique per order attempt; a retry with the same key "
                                                   "returns the first order instead of placing a second")]


async def owned_order(order_id: IdPath, user: CurrentUser, session: SessionDep) -> Order:
    """The order, if it exists and the caller owns it (admins see all); else 404."""
    order = await session.get(Order, order_id)
    if order is None or (order.user_id != user.sub and not user.is_admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"order {order_id!r} not found")
    return order


OwnedOrder = Annotated[Order, Depends(owned_order)]


@router.post("", response_model=OrderAccepted, status_code=status.HTTP_202_ACCEPTED,
             summary="Place an order (asynchronous checkout saga)",
             responses={409: {"description": "Idempotency-Key reused with a different body"},
                        422: {"description": "Invalid order (e.g. unknown product, bad card number)"},
                        503: {"description": "Product catalog unavailable"}})
async def create_order(body: OrderCreate, idempotency_key: IdempotencyKey, user: CurrentUser,
                       session: SessionDep, request: Request, response: Response) -> OrderAccepted:
    try:
        existing = await domain.find_by_key(session, user.sub, idempotency_key, body)
    except domain.IdempotencyConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if existing is not None:
        response.headers["Location"] = f"/api/orders/{existing.id}"
        return OrderAccepted(id=existing.id, status=existing.status)
    items = domain.merged_items(body)
    try:
        prices = await request.app.state.catalog.prices([i["product_id"] for i in items])
        lines, total = domain.price_lines(items, prices)
    except domain.UnknownProduct as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from None
    except CatalogUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc),
                            headers={"Retry-After": "1"}) from None
    order = domain.new_order(user.sub, idempotency_key, body, lines, total)
    session.add(order)
    add_to_outbox(session, events.order_created(order))  # same transaction as the order row
    try:
        await session.commit()
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its order.
        await session.rollback()
        try:
            existing = await domain.find_by_key(session, user.sub, idempotency_key, body)
        except domain.IdempotencyConflict as exc:  # the winner sent a different body
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        if existing is None:
            raise
        order = existing
    publish_committed(request.app, session)
    log.info("order accepted", extra={"fields": {"order_id": order.id, "total_cents": order.total_cents}})
    response.headers["Location"] = f"/api/orders/{order.id}"
    return OrderAccepted(id=order.id, status=order.status)


@router.get("", response_model=list[OrderPublic], summary="My orders, newest first (admin: all)")
async def list_orders(user: CurrentUser, session: SessionDep,
                      status_: Annotated[str | None, Query(alias="status", pattern="^(pending|confirmed|cancelled)$")] = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[OrderPublic]:
    query = select(Order)
    if not user.is_admin:
        query = query.where(Order.user_id == user.sub)
    if status_:
        query = query.where(Order.status == status_)
    query = query.order_by(Order.created_at.desc(), Order.id).limit(limit).offset(offset)
    return [domain.to_public(o) for o in (await session.scalars(query)).all()]


@router.get("/{order_id}", response_model=OrderPublic, summary="One of my orders",
            responses={404: {"description": "No such order (or not yours)"}})
async def get_order(order: OwnedOrder) -> OrderPublic:
    return domain.to_public(order)


@router.post("/{order_id}/cancel", response_model=OrderPublic, summary="Cancel one of my orders",
             description="Stock is released and an authorized payment refunded, by events.",
             responses={404: {"description": "No such order (or not yours)"},
                        409: {"description": "Already cancelled"}})
async def cancel_order(order: OwnedOrder, session: SessionDep, request: Request) -> OrderPublic:
    locked = await session.get(Order, order.id, with_for_update=True, populate_existing=True)
    if not domain.cancel(locked, "cancelled by customer"):
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"order {order.id!r} is already cancelled")
    add_to_outbox(session, events.order_cancelled(locked))
    await session.commit()
    publish_committed(request.app, session)
    return domain.to_public(locked)


@router.get("/{order_id}/events", response_model=list[EventPublic], summary="Replay my order's event history",
            description="Every event of this order from the event store (NATS JetStream), oldest first.",
            responses={404: {"description": "No such order (or not yours)"}})
async def order_events(order: OwnedOrder, request: Request) -> list[dict]:
    history = await request.app.state.bus.history(order.id)
    for event in history:  # the card number never leaves the saga
        event.get("payload", {}).pop("card_number", None)
    return history
