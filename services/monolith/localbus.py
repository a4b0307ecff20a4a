"""In-process delivery of outbox events for the monolith (no broker: one process).

Handlers subscribe exactly as on the JetStream bus; a relay reads the outbox and calls them.
Events nobody handles are simply marked sent: the outbox stays the order's event history.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from services.common.db import Database, OutboxEvent, mark_processed, utcnow
from services.common.logging import get_logger

log = get_logger("cloudmart.monolith.bus")


class LocalBus:
    connected = True

    def __init__(self):
        self.handlers: list[tuple[str, list[str], Database | None, object]] = []
        self._tasks: list[asyncio.Task] = []

    def subscribe(self, db, durable, stream, subjects, handler, workers: int = 1) -> None:
        self.handlers.append((durable, subjects, db, handler))

    @property
    def subjects(self) -> frozenset[str]:
        """The subjects an in-process handler consumes (rows of any other are history only)."""
        return frozenset(s for _, subjects, _, _ in self.handlers for s in subjects)

    def handles(self, subject: str) -> bool:
        return subject in self.subjects

    def send_soon(self, db: Database, events: list[dict]) -> None:
        """After a commit: wake the relay if one of the committed events has a handler."""
        if any(self.handles(event["type"]) for event in events):
            db.outbox_wakeup.set()

    def start_relay(self, db: Database) -> None:
        self._tasks.append(asyncio.create_task(self._relay(db)))

    async def _relay(self, db: Database) -> None:
        while True:
            try:
                async with db.sessions() as session, session.begin():
                    rows = (await session.scalars(
                        select(OutboxEvent).where(OutboxEvent.sent_at.is_(None)).order_by(OutboxEvent.id)
                        .limit(100).with_for_update(skip_locked=True))).all()
                    for row in rows:
                        for durable, subjects, handler_db, handler in self.handlers:
                            if row.subject in subjects and await mark_processed(session, row.event_id, durable):
                                await handler(session if handler_db else None, row.data)
                        row.sent_at = utcnow()
                if rows:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("local relay failed; retrying", extra={"fields": {"error": str(exc)}})
            db.outbox_wakeup.clear()
            try:
                await asyncio.wait_for(db.outbox_wakeup.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass

    async def history(self, order_id: str | None = None, streams=None, limit: int = 100_000) -> list[dict]:
        from services.common.db import get_database

        async with get_database().sessions() as session:
            query = select(OutboxEvent).order_by(OutboxEvent.id).limit(limit)
            if order_id is not None:
                query = query.where(OutboxEvent.data["order_id"].as_string() == order_id)
            return [row.data for row in (await session.scalars(query)).all()]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
