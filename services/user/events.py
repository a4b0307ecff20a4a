"""The user service publishes ``users.registered`` (through its outbox) so auth learns the credentials."""

from __future__ import annotations

from services.common.bus import make_event

PUBLISHES = ["users.registered"]


def user_registered(username: str, password_hash: str) -> dict:
    return make_event("users.registered", None, {"username": username, "password_hash": password_hash,
                                                 "roles": ["customer"]})
