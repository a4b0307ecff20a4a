"""User service wiring."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.app import ServiceSpec, create_app
from services.common.settings import Settings
from services.user import api
from services.user.models import Credential, UserAccount


def build_app(settings: Settings | None = None) -> FastAPI:
    """The user service app."""
    settings = settings or Settings.from_env("user")
    return create_app(ServiceSpec(
        settings=settings, title="CloudMart user",
        description="Customer registration and own profile; keeps the credentials the auth service checks "
                    "(database: PostgreSQL `user`).",
        routers=[api.router, api.internal], tables=[UserAccount, Credential], uses_nats=True, outbox=True,
    ))
