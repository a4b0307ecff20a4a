"""Payment routes under /api/payments: a customer sees only their own payments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import select

from services.common.auth import CurrentUser
from services.common.db import SessionDep
from services.common.types import IdPath
from services.payment.models import Payment, PaymentPublic

router = APIRouter(prefix="/api/payments", tags=["payments"])


@router.get("", response_model=list[PaymentPublic], summary="My payments (admin: all)")
async def list_payments(user: CurrentUser, session: SessionDep,
                        limit: Annotated[int, Query(ge=1, le=500)] = 50,
                        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[Payment]:
    query = select(Payment).where(Payment.status != "void")
    if not user.is_admin:
        query = query.where(Payment.user_id == user.sub)
    query = query.order_by(Payment.created_at.desc()).limit(limit).offset(offset)
    return list((await session.scalars(query)).all())


@router.get("/{order_id}", response_model=PaymentPublic, summary="The payment of one of my orders",
            responses={404: {"description": "No such payment (or not yours)"}})
async def get_payment(order_id: IdPath, user: CurrentUser, session: SessionDep) -> Payment:
    payment = await session.get(Payment, order_id)
    if payment is None or payment.status == "void" or (payment.user_id != user.sub and not user.is_admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"payment for order {order_id!r} not found")
    return payment
