"""Auth service wiring: signing key from the state folder, Redis (rate limits, login failures),
and the user service (``USER_URL``), which checks registered customers' passwords."""

from __future__ import annotations

from fastapi import FastAPI

from services.auth import api
from services.auth.credentials import UserServiceCredentials
from services.auth.keyring import KeyRing, RingKeySource
from services.auth.revocation import DenyList, RevocationAwareVerifier
from services.auth.ratelimit import TokenBucket
from services.auth.throttle import LoginThrottle
from services.common import auth
from services.common.app import ServiceSpec, create_app
from services.common.settings import Settings


def install_token_issuer(app: FastAPI, signing_key, settings: Settings, credentials=None) -> None:
    """What issuing and checking tokens needs on app.state: the key ring (``signing_key`` is its
    first current key), the ``jti`` deny list, the rate limiter, the login throttle and the
    credential store (default: the user service at ``USER_URL``). This process's own checks use
    the ring's published keys and the deny list."""
    app.state.keyring = KeyRing(settings.state_dir, retire_after_s=settings.token_ttl_s, initial_key=signing_key)
    app.state.deny_list = DenyList(app.state.redis)
    auth.configure(RevocationAwareVerifier(RingKeySource(app.state.keyring), settings.jwt_issuer,
                                           settings.jwt_audience, app.state.deny_list))
    app.state.rate_limiter = TokenBucket(app.state.redis, settings.rate_limit_rps, settings.rate_limit_burst)
    app.state.login_throttle = LoginThrottle(app.state.redis, settings.login_max_failures_account,
                                             settings.login_max_failures_ip, settings.login_failure_window_s)
    app.state.credentials = credentials or UserServiceCredentials(
        settings.user_url, app.state.keyring, settings.jwt_issuer)


def build_app(settings: Settings | None = None) -> FastAPI:
    """The auth service app."""
    settings = settings or Settings.from_env("auth")
    signing_key = auth.load_or_create_signing_key(settings.state_dir)

    async def startup(app: FastAPI) -> None:
        install_token_issuer(app, signing_key, settings)

    async def shutdown(app: FastAPI) -> None:
        await app.state.credentials.close()

    return create_app(ServiceSpec(
        settings=settings,
        title="CloudMart auth",
        description="Issues RS256 JWTs (OAuth2 password and client_credentials grants; failed logins "
                    "throttled per account and per address), publishes the JWKS, and answers the gateway's "
                    "forward-auth check with a Redis token-bucket rate limit.",
        routers=[api.router],
        uses_redis=True,
        on_startup=[startup],
        on_shutdown=[shutdown],
        local_signing_key=signing_key.public_key(),
    ))
