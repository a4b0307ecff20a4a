"""Product service wiring: catalog store (montydb or MongoDB), Redis cache.

Redis is only the cache: without it reads come from the store, so the service is ready without
it (readiness names it, `"redis": "failed"`); admin writes answer 503 until it is back, since a
write whose cache entry cannot be invalidated would be served stale once Redis returns.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from services.common.app import ServiceSpec, create_app
from services.common.settings import Settings
from services.product import api
from services.product.store import CatalogStore


def build_app(settings: Settings | None = None) -> FastAPI:
    """The product service app."""
    settings = settings or Settings.from_env("product")

    async def startup(app: FastAPI) -> None:
        app.state.store = CatalogStore(settings.mongo_url, settings.state_dir)
        await run_in_threadpool(app.state.store.seed)

    async def catalog_ready(app: FastAPI) -> None:
        await run_in_threadpool(app.state.store.ping)

    return create_app(ServiceSpec(
        settings=settings, title="CloudMart product",
        description="The catalog: public list/search/get cached in Redis (cache-aside), admin create/update. "
                    "Storage: montydb (embedded) or MongoDB when MONGO_URL is set.",
        routers=[api.router, api.internal], uses_redis=True, redis_optional=True, on_startup=[startup], readiness={"catalog": catalog_ready},
    ))
