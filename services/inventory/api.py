"""Inventory routes under /api/inventory: stock is public to read, admin to set."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from services.common.auth import AdminUser
from services.common.db import SessionDep
from services.common.types import IdPath
from services.inventory import domain
from services.inventory.models import Stock, StockPublic, StockUpdate

router = APIRouter(prefix="/api/inventory", tags=["inventory"])


@router.get("", response_model=list[StockPublic], summary="Stock of every product")
async def list_stock(session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                     offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[Stock]:
    return await domain.list_stock(session, limit, offset)


@router.get("/{product_id}", response_model=StockPublic, summary="Stock of one product",
            responses={404: {"description": "No stock record for this product"}})
async def get_stock(product_id: IdPath, session: SessionDep) -> Stock:
    stock = await session.get(Stock, product_id)
    if stock is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no stock record for product {product_id!r}")
    return stock


@router.put("/{product_id}", response_model=StockPublic, summary="Set available units (admin restock)")
async def put_stock(product_id: IdPath, body: StockUpdate, session: SessionDep, _: AdminUser) -> Stock:
    stock = await domain.set_available(session, product_id, body.available)
    await session.commit()
    return stock
