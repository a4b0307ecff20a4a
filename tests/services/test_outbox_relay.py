"""The outbox relay keeps the rows it did publish when a later publish of the same batch fails.

A broker that times out now and then (a loaded machine, a reconnect) must slow the relay down,
not stop it: before, one failed publish rolled the whole batch back, so with one failure in every
few publishes no batch ever committed and orders stayed pending.
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select, update

from services.common.bus import OutboxRelay, make_event
from services.common.db import Database, OutboxEvent, add_to_outbox


class FlakyBus:
    """Publishes succeed except every `every`-th call, which times out like nats-py does."""

    def __init__(self, every: int):
        self.every, self.calls, self.published = every, 0, []

    async def publish(self, event: dict) -> None:
        self.calls += 1
        if self.calls % self.every == 0:
            raise TimeoutError("nats: timeout")
        self.published.append(event["event_id"])


async def _relay_with_flaky_broker(url: str) -> tuple[int, int, int]:
    db = Database(url)
    try:
        await db.create_tables([OutboxEvent])
        tag = uuid.uuid4().hex[:8]
        async with db.sessions() as session, session.begin():
            await session.execute(update(OutboxEvent).where(OutboxEvent.sent_at.is_(None))
                                  .values(sent_at=func.now()))   # only this test's rows are pending
            for i in range(30):
                add_to_outbox(session, make_event("orders.created", None, {"test": tag, "i": i}))
        async with db.sessions() as session, session.begin():
            await session.execute(update(OutboxEvent).where(OutboxEvent.sent_at.is_(None))
                                  .values(created_at=func.now() - OutboxRelay.grace * 2))
        bus = FlakyBus(every=7)
        relay = OutboxRelay(db, bus, batch=100)
        for _ in range(12):
            try:
                await relay.relay_once()
            except TimeoutError:
                pass
        async with db.sessions() as session:
            pending = await session.scalar(select(func.count()).select_from(OutboxEvent)
                                           .where(OutboxEvent.sent_at.is_(None)))
        return pending, len(set(bus.published)), bus.calls
    finally:
        await db.close()


def test_a_failed_publish_keeps_the_rows_already_published(infra):
    pending, distinct_published, calls = asyncio.run(_relay_with_flaky_broker(infra.database_url("order")))
    assert pending == 0, f"{pending} of 30 outbox rows still pending after 12 relay passes ({calls} publishes)"
    assert distinct_published == 30
