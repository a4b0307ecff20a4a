"""Notification service wiring."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.app import ServiceSpec, create_app
from services.common.settings import Settings
from services.notification import api, events
from services.notification.models import Notification


def build_app(settings: Settings | None = None) -> FastAPI:
    """The notification service app."""
    settings = settings or Settings.from_env("notification")

    async def startup(app: FastAPI) -> None:
        await events.start_consumers(app)

    return create_app(ServiceSpec(
        settings=settings, title="CloudMart notification",
        description="Consumes order outcomes and stores a message per order (PostgreSQL `notification`).",
        routers=[api.router], tables=[Notification], uses_nats=True, outbox=True, on_startup=[startup],
    ))
