"""Payment service wiring."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.app import ServiceSpec, create_app
from services.common.settings import Settings
from services.payment import api, events
from services.payment.models import ExpectedCharge, Payment


def build_app(settings: Settings | None = None) -> FastAPI:
    """The payment service app."""
    settings = settings or Settings.from_env("payment")

    async def startup(app: FastAPI) -> None:
        await events.start_consumers(app)

    return create_app(ServiceSpec(
        settings=settings, title="CloudMart payment",
        description="Authorize and refund payments, driven by order events and idempotent per order "
                    "(PostgreSQL `payment`). Test cards: 4242424242424242 succeeds, 4000000000000002 is declined.",
        routers=[api.router], tables=[Payment, ExpectedCharge], uses_nats=True, outbox=True, on_startup=[startup],
    ))
