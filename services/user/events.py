"""The user service publishes ``users.registered`` (through its outbox): a new customer's username.

No password hash and no roles: the credentials stay in the user service's database, and roles
are never taken from an event.
"""

from __future__ import annotations

from services.common.bus import make_event

PUBLISHES = ["users.registered"]


def user_registered(username: str) -> dict:
    return make_event("users.registered", None, {"username": username})
