"""Notification consumes ``orders.confirmed`` and ``orders.cancelled``; publishes ``notifications.sent``."""

from __future__ import annotations

from fastapi import FastAPI

from services.common import metrics
from services.common.bus import make_event, step_event_id
from services.common.db import add_to_outbox
from services.notification.domain import message_for, notify

CONSUMES = ["orders.confirmed", "orders.cancelled"]
PUBLISHES = ["notifications.sent"]


async def handle(session, event: dict) -> None:
    order_id, payload = event["order_id"], event["payload"]
    kind = "order_confirmed" if event["type"] == "orders.confirmed" else "order_cancelled"
    message = message_for(kind, order_id, payload.get("total_cents"), payload.get("reason"))
    if await notify(session, payload["user_id"], order_id, kind, message):
        add_to_outbox(session, make_event("notifications.sent", order_id,
                                          {"user_id": payload["user_id"], "kind": kind, "message": message},
                                          step_event_id(order_id, f"notifications.sent.{kind}")))
        metrics.saga_step("notify", kind)


async def start_consumers(app: FastAPI) -> None:
    app.state.bus.subscribe(app.state.db, "notification", "ORDERS", CONSUMES, handle)
