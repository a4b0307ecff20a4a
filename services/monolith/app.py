"""Monolith wiring: every public router of the seven services in one app, one database."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from services.auth import api as auth_api
from services.auth.app import install_token_issuer
from services.auth.credentials import DatabaseCredentials
from services.common import auth
from services.common.app import ServiceSpec, create_app
from services.common.db import OutboxEvent, ProcessedEvent
from services.common.settings import Settings
from services.inventory import api as inventory_api
from services.inventory import domain as inventory_domain
from services.inventory.models import Reservation, Stock
from services.monolith import api as order_api
from services.monolith.catalog import PgCatalogStore, ProductRow
from services.monolith.localbus import LocalBus
from services.notification import api as notification_api
from services.notification.models import Notification
from services.order.models import Order
from services.payment import api as payment_api
from services.payment.models import Payment
from services.product import api as product_api
from services.user import api as user_api
from services.user.models import Credential, UserAccount

TABLES = [UserAccount, Credential, ProductRow, Stock, Reservation, Order, Payment, Notification, OutboxEvent, ProcessedEvent]


def build_app(settings: Settings | None = None) -> FastAPI:
    """The monolith app."""
    settings = settings or Settings.from_env("monolith")
    signing_key = auth.load_or_create_signing_key(settings.state_dir)

    async def startup(app: FastAPI) -> None:
        install_token_issuer(app, signing_key, settings, credentials=DatabaseCredentials(app.state.db))
        app.state.store = PgCatalogStore(settings.database_url)
        await run_in_threadpool(app.state.store.seed)
        async with app.state.db.sessions() as session, session.begin():
            await inventory_domain.seed_stock(session)
        app.state.bus = LocalBus()
        app.state.bus.start_relay(app.state.db)

    async def shutdown(app: FastAPI) -> None:
        await app.state.bus.close()
        app.state.store.close()

    return create_app(ServiceSpec(
        settings=settings, title="CloudMart monolith",
        description="The whole CloudMart public API in one process with one PostgreSQL database; "
                    "the checkout runs in one database transaction.",
        routers=[auth_api.router, user_api.router, product_api.router, inventory_api.router, order_api.router,
                 payment_api.router, notification_api.router],
        tables=TABLES, uses_redis=True, on_startup=[startup], on_shutdown=[shutdown],
        local_signing_key=signing_key.public_key(),
    ))
