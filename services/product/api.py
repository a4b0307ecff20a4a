"""Product routes under /api/products: public reads (cache-aside in Redis), admin writes."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from services.common.auth import AdminUser
from services.common.logging import get_logger
from services.common.types import Identifier, IdPath, Text
from services.product.models import ProductCreate, ProductList, ProductPublic, ProductUpdate, to_public

log = get_logger("cloudmart.product")
router = APIRouter(prefix="/api/products", tags=["products"])

#: For other services (not behind the gateway): reads straight from the store, never the cache.
internal = APIRouter(prefix="/internal", tags=["internal"])

PRODUCT_TTL_S = 300
LIST_TTL_S = 60
_GENERATION_KEY = "products:generation"


async def _cache_get(request: Request, key: str):
    try:
        raw = await request.app.state.redis.get(key)
    except Exception as exc:  # the cache is an optimisation: serve from the store if Redis fails
        log.warning("cache read failed", extra={"fields": {"error": str(exc)}})
        return None
    return json.loads(raw) if raw else None


async def _cache_set(request: Request, key: str, value, ttl_s: int) -> None:
    try:
        await request.app.state.redis.set(key, json.dumps(value), ex=ttl_s)
    except Exception as exc:
        log.warning("cache write failed", extra={"fields": {"error": str(exc)}})


async def _cache_writable(request: Request) -> None:
    """Refuse a catalog write while Redis is down: its cached copy could not be invalidated, and
    Redis keeps its data over a restart, so readers would get the old product for up to 5 min."""
    try:
        await request.app.state.redis.ping()
    except Exception as exc:
        log.warning("catalog write refused: cache unavailable", extra={"fields": {"error": str(exc)[:200]}})
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"},
                            detail="the catalog cannot change while its cache is unavailable, retry later") from exc


async def _invalidate(request: Request, product_id: str) -> None:
    redis = request.app.state.redis
    await redis.delete(f"product:{product_id}")
    await redis.incr(_GENERATION_KEY)  # every cached list page becomes stale at once


@router.get("", response_model=ProductList, summary="List or search products (cached)")
async def list_products(
    request: Request,
    response: Response,
    q: Annotated[Text | None, Query(max_length=100, description="Case-insensitive name search")] = None,
    category: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> dict:
    try:
        generation = await request.app.state.redis.get(_GENERATION_KEY) or "0"
    except Exception as exc:  # serve from the store without the cache
        log.warning("cache read failed", extra={"fields": {"error": str(exc)}})
        generation = "unavailable"
    digest = hashlib.sha256(json.dumps([q, category, limit, offset]).encode()).hexdigest()[:24]
    key = f"products:list:{generation}:{digest}"
    cached = await _cache_get(request, key)
    if cached is not None:
        response.headers["X-Cache"] = "hit"
        return cached
    docs, total = await run_in_threadpool(request.app.state.store.search, q, category, limit, offset)
    result = {"items": [to_public(d) for d in docs], "total": total, "limit": limit, "offset": offset}
    await _cache_set(request, key, result, LIST_TTL_S)
    response.headers["X-Cache"] = "miss"
    return result


@router.get("/{product_id}", response_model=ProductPublic, summary="Get one product (cached)",
            responses={404: {"description": "No such product"}})
async def get_product(product_id: IdPath, request: Request, response: Response) -> dict:
    key = f"product:{product_id}"
    cached = await _cache_get(request, key)
    if cached is not None:
        response.headers["X-Cache"] = "hit"
        return cached
    doc = await run_in_threadpool(request.app.state.store.get, product_id)
    if doc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"product {product_id!r} not found")
    result = to_public(doc)
    await _cache_set(request, key, result, PRODUCT_TTL_S)
    response.headers["X-Cache"] = "miss"
    return result


@router.post("", response_model=ProductPublic, status_code=status.HTTP_201_CREATED, summary="Create a product (admin)",
             responses={409: {"description": "Id taken"}, 503: {"description": "Cache unavailable: not written"}})
async def create_product(body: ProductCreate, request: Request, _: AdminUser) -> dict:
    await _cache_writable(request)
    product_id = body.id or secrets.token_hex(5).upper()
    doc = {"_id": product_id, **body.model_dump(exclude={"id"})}
    if not await run_in_threadpool(request.app.state.store.insert, doc):
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"product {product_id!r} already exists")
    await _invalidate(request, product_id)
    return to_public(doc)


@router.patch("/{product_id}", response_model=ProductPublic, summary="Update a product (admin)",
              responses={404: {"description": "No such product"}, 503: {"description": "Cache unavailable: not written"}})
async def update_product(product_id: IdPath, body: ProductUpdate, request: Request, _: AdminUser) -> dict:
    await _cache_writable(request)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    doc = await run_in_threadpool(request.app.state.store.update, product_id, changes)
    if doc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"product {product_id!r} not found")
    await _invalidate(request, product_id)
    return to_public(doc)


@internal.get("/prices", summary="Current prices from the catalog store (never the cache), for pricing orders",
              description="`ids` may repeat up to 50 times; unknown ids are left out of the answer.")
async def prices(request: Request,
                 ids: Annotated[list[Identifier], Query(min_length=1, max_length=50)]) -> dict[str, dict[str, int]]:
    store = request.app.state.store

    def lookup() -> dict[str, int]:
        found = {}
        for product_id in dict.fromkeys(ids):
            doc = store.get(product_id)
            if doc is not None:
                found[product_id] = int(doc["price_cents"])
        return found

    return {"prices": await run_in_threadpool(lookup)}
