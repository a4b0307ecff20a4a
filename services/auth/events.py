"""Auth consumes ``users.registered`` (from the user service) to learn new customers' credentials.

Credentials live in Redis (``auth:user:<username>``); writing a hash field is idempotent, so a
redelivered event changes nothing.
"""

from __future__ import annotations

import json

from fastapi import FastAPI

from services.common.logging import get_logger

log = get_logger("cloudmart.auth.events")

CONSUMES = ["users.registered"]


def credentials_key(username: str) -> str:
    return f"auth:user:{username}"


async def start_consumers(app: FastAPI) -> None:
    redis = app.state.redis

    async def on_user_registered(_session, event: dict) -> None:
        payload = event["payload"]
        await redis.hset(credentials_key(payload["username"]), mapping={
            "password_hash": payload["password_hash"], "roles": json.dumps(payload.get("roles", ["customer"]))})
        log.info("credentials stored", extra={"fields": {"username": payload["username"]}})

    app.state.bus.subscribe(None, "auth", "USERS", CONSUMES, on_user_registered, workers=1)
