"""Order service wiring: PostgreSQL `order` (orders + outbox), NATS, the product client."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text

from services.common.app import ServiceSpec, create_app
from services.common.settings import Settings
from services.order import api, events
from services.order.catalog import ProductClient
from services.order.models import Order


async def redact_card_numbers(app: FastAPI) -> None:
    """Older releases kept card numbers in sent outbox rows and final orders: erase them. (Events
    now carry the processor's card token; an unsent row keeps its number until it is sent.)"""
    async with app.state.db.sessions() as session, session.begin():
        await session.execute(text(
            "UPDATE outbox SET data = jsonb_set(data::jsonb, '{payload}', (data::jsonb -> 'payload') - 'card_number') "
            "WHERE sent_at IS NOT NULL AND (data::jsonb -> 'payload') ? 'card_number'"))
        await session.execute(text("UPDATE orders SET card_number = NULL WHERE card_number IS NOT NULL "
                                   "AND status <> 'pending'"))


def build_app(settings: Settings | None = None) -> FastAPI:
    """The order service app."""
    settings = settings or Settings.from_env("order")

    async def startup(app: FastAPI) -> None:
        if not settings.product_url:
            raise RuntimeError("order: PRODUCT_URL is not set (base URL of the product service)")
        await redact_card_numbers(app)
        app.state.catalog = ProductClient(settings.product_url)
        await app.state.catalog.start()
        await events.start_consumers(app)

    async def shutdown(app: FastAPI) -> None:
        await app.state.catalog.close()

    return create_app(ServiceSpec(
        settings=settings, title="CloudMart order",
        description="Accepts orders (202, idempotent by `Idempotency-Key`) and orchestrates the checkout saga "
                    "over NATS JetStream with a transactional outbox (PostgreSQL `order`).",
        routers=[api.router], tables=[Order], uses_nats=True, outbox=True,
        on_startup=[startup], on_shutdown=[shutdown],
    ))
