"""Inventory service wiring."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.app import ServiceSpec, create_app
from services.common.settings import Settings
from services.inventory import api, domain, events
from services.inventory.models import Reservation, Stock


def build_app(settings: Settings | None = None) -> FastAPI:
    """The inventory service app."""
    settings = settings or Settings.from_env("inventory")

    async def startup(app: FastAPI) -> None:
        async with app.state.db.sessions() as session, session.begin():
            await domain.seed_stock(session)
        await events.start_consumers(app)

    return create_app(ServiceSpec(
        settings=settings, title="CloudMart inventory",
        description="Stock per product (PostgreSQL `inventory`); reserve, release and commit are driven by "
                    "order events, with exactly-once effects.",
        routers=[api.router], tables=[Stock, Reservation], uses_nats=True, outbox=True, on_startup=[startup],
    ))
