"""The monolith's order routes: same paths and models as the order service, synchronous checkout.
Listing and reading reuse the order service's route functions and ownership dependency."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.common.auth import CurrentUser
from services.common.bus import publish_committed
from services.common.db import SessionDep
from services.order import api as order_api
from services.order import domain
from services.order.models import EventPublic, OrderAccepted, OrderCreate, OrderPublic
from services.monolith import checkout
from services.monolith.catalog import ProductRow

router = APIRouter(prefix="/api/orders", tags=["orders"])


@router.post("", response_model=OrderAccepted, status_code=status.HTTP_202_ACCEPTED,
             summary="Place an order (checked out synchronously: the status is already final)",
             responses={409: {"description": "Idempotency-Key reused with a different body"},
                        422: {"description": "Invalid order (e.g. unknown product, bad card number)"}})
async def create_order(body: OrderCreate, idempotency_key: order_api.IdempotencyKey, user: CurrentUser,
                       session: SessionDep, request: Request, response: Response) -> OrderAccepted:
    try:
        existing = await domain.find_by_key(session, user.sub, idempotency_key, body)
    except domain.IdempotencyConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if existing is None:
        items = domain.merged_items(body)
        # Prices from the catalog table, in this request's session: one query, no thread hop.
        prices = dict((await session.execute(select(ProductRow.id, ProductRow.price_cents).where(
            ProductRow.id.in_([i["product_id"] for i in items])))).tuples().all())
        try:
            lines, total = domain.price_lines(items, prices)
        except domain.UnknownProduct as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from None
        order = domain.new_order(user.sub, idempotency_key, body, lines, total)
        session.info["local_subjects"] = request.app.state.bus.subjects
        try:
            session.add(order)
            await session.flush()
            await checkout.checkout(session, order)
            await session.commit()
        except IntegrityError:
            await session.rollback()  # a concurrent request with the same key won
            try:
                existing = await domain.find_by_key(session, user.sub, idempotency_key, body)
            except domain.IdempotencyConflict as exc:  # ... with a different body
                raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
            if existing is None:
                raise
        else:
            existing = order
        publish_committed(request.app, session)
    response.headers["Location"] = f"/api/orders/{existing.id}"
    return OrderAccepted(id=existing.id, status=existing.status)


router.add_api_route("", order_api.list_orders, methods=["GET"], response_model=list[OrderPublic],
                     summary="My orders, newest first (admin: all)")
router.add_api_route("/{order_id}", order_api.get_order, methods=["GET"], response_model=OrderPublic,
                     summary="One of my orders", responses={404: {"description": "No such order (or not yours)"}})


@router.post("/{order_id}/cancel", response_model=OrderPublic, summary="Cancel one of my orders",
             description="Stock is released and the payment refunded in the same transaction.",
             responses={404: {"description": "No such order (or not yours)"},
                        409: {"description": "Already cancelled"}})
async def cancel_order(order: order_api.OwnedOrder, session: SessionDep, request: Request) -> OrderPublic:
    session.info["local_subjects"] = request.app.state.bus.subjects
    locked = await session.get(type(order), order.id, with_for_update=True, populate_existing=True)
    if not await checkout.cancel(session, locked, "cancelled by customer"):
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"order {order.id!r} is already cancelled")
    await session.commit()
    return domain.to_public(locked)


router.add_api_route("/{order_id}/events", order_api.order_events, methods=["GET"],
                     response_model=list[EventPublic], summary="Replay my order's event history",
                     responses={404: {"description": "No such order (or not yours)"}})
