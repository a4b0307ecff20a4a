"""Inventory consumes ``orders.created`` (reserve), ``orders.confirmed`` (commit the sale) and
``orders.cancelled`` (release); it publishes ``inventory.reserved``, ``inventory.rejected`` and
``inventory.released`` through its outbox."""

from __future__ import annotations

from fastapi import FastAPI

from services.common import metrics
from services.common.bus import make_event, step_event_id
from services.common.db import add_to_outbox
from services.inventory import domain

CONSUMES = ["orders.created", "orders.confirmed", "orders.cancelled"]
PUBLISHES = ["inventory.reserved", "inventory.rejected", "inventory.released"]


async def handle(session, event: dict) -> None:
    order_id = event["order_id"]
    if event["type"] == "orders.created":
        outcome = await domain.reserve(session, order_id, event["payload"]["items"])
        if outcome == "reserved":
            add_to_outbox(session, make_event("inventory.reserved", order_id, {"items": event["payload"]["items"]},
                                              step_event_id(order_id, "inventory.reserved")))
            metrics.saga_step("reserve_stock", "ok")
        elif outcome == "rejected":
            reason = await domain.rejection_reason(session, order_id)
            add_to_outbox(session, make_event("inventory.rejected", order_id, {"reason": reason},
                                              step_event_id(order_id, "inventory.rejected")))
            metrics.saga_step("reserve_stock", "out_of_stock")
    elif event["type"] == "orders.confirmed":
        if await domain.commit(session, order_id):
            metrics.saga_step("commit_stock", "ok")
    elif event["type"] == "orders.cancelled":
        if await domain.release(session, order_id):
            add_to_outbox(session, make_event("inventory.released", order_id, {},
                                              step_event_id(order_id, "inventory.released")))
            metrics.saga_step("release_stock", "ok")


async def start_consumers(app: FastAPI) -> None:
    app.state.bus.subscribe(app.state.db, "inventory", "ORDERS", CONSUMES, handle)
