"""Auth service wiring: signing key from the state folder, Redis (rate limits, credentials), NATS."""

from __future__ import annotations

from fastapi import FastAPI

from services.auth import api, events
from services.auth.ratelimit import TokenBucket
from services.common import auth
from services.common.app import ServiceSpec, create_app
from services.common.settings import Settings


def install_token_issuer(app: FastAPI, signing_key, settings: Settings) -> None:
    """What issuing and checking tokens needs on app.state: the key, its JWKS and the rate limiter."""
    app.state.signing_key = signing_key
    app.state.key_id = auth.key_id(signing_key.public_key())
    app.state.jwks = auth.jwks_for(signing_key.public_key())
    app.state.rate_limiter = TokenBucket(app.state.redis, settings.rate_limit_rps, settings.rate_limit_burst)


def build_app(settings: Settings | None = None) -> FastAPI:
    """The auth service app."""
    settings = settings or Settings.from_env("auth")
    signing_key = auth.load_or_create_signing_key(settings.state_dir)

    async def startup(app: FastAPI) -> None:
        install_token_issuer(app, signing_key, settings)
        await events.start_consumers(app)

    return create_app(ServiceSpec(
        settings=settings,
        title="CloudMart auth",
        description="Issues RS256 JWTs (OAuth2 password and client_credentials grants), publishes the JWKS, "
                    "and answers the gateway's forward-auth check with a Redis token-bucket rate limit.",
        routers=[api.router],
        uses_redis=True,
        uses_nats=True,
        on_startup=[startup],
        local_signing_key=signing_key.public_key(),
    ))
