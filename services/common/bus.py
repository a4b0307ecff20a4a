"""NATS JetStream: the event bus and event store of the checkout saga.

- Events are JSON with ``type`` (e.g. ``orders.created``), ``order_id``, ``event_id``,
  ``occurred_at``, ``traceparent`` and ``payload``. The subject is the type, followed by the
  order id when there is one (``orders.created.<order id>``), so the broker can find one
  order's events without reading the others.
- Publishing goes through the transactional outbox (:func:`services.common.db.add_to_outbox`);
  :class:`OutboxRelay` sends pending rows with ``Nats-Msg-Id`` = event id, so JetStream drops a
  duplicate if the relay dies between publishing and marking a row sent.
- Consumers are durable pull consumers with explicit ack; the effect and the processed-event
  record commit in one transaction, then the message is acked (exactly-once effect).
- :meth:`Bus.history` replays an order's full history from the streams, filtered by subject.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import nats
from nats.js import api
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common import metrics, tracing
from services.common.db import Database, OutboxEvent, mark_processed, take_committed, utcnow
from services.common.logging import get_logger

log = get_logger("cloudmart.bus")

STREAMS: dict[str, list[str]] = {
    "ORDERS": ["orders.>"],
    "INVENTORY": ["inventory.>"],
    "PAYMENTS": ["payments.>"],
    "NOTIFICATIONS": ["notifications.>"],
    "USERS": ["users.>"],
}

Handler = Callable[[AsyncSession, dict], Awaitable[None]]


_EVENT_NS = uuid.UUID("5d0c3f7e-9b1a-4c55-a1f3-0c1d2e3f4a5b")


def step_event_id(order_id: str, type_: str) -> str:
    """A deterministic id for a saga step that happens once per order: a retry of the step
    produces the same id, so JetStream de-duplicates it and consumers ignore it."""
    return str(uuid.uuid5(_EVENT_NS, f"{order_id}/{type_}"))


_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def subject_of(event: dict) -> str:
    """The subject an event is published on: ``<type>.<order id>``, or ``<type>`` alone."""
    order_id = event.get("order_id")
    if isinstance(order_id, str) and _SUBJECT_TOKEN.match(order_id):
        return f"{event['type']}.{order_id}"
    return event["type"]


def type_of_subject(subject: str) -> str:
    """The event type a subject carries (its first two tokens), e.g. for metric labels."""
    return ".".join(subject.split(".")[:2])


def filter_subjects(types: list[str]) -> list[str]:
    """What a consumer of ``types`` listens to: each type with any order id (and without one,
    as events of older releases and of no order are published)."""
    return [subject for t in types for subject in (t, f"{t}.*")]


def publish_committed(app, session) -> None:
    """Call after a route's commit: publish the events it committed (in the background)."""
    events = take_committed(session)
    if not events:
        return
    bus = getattr(app.state, "bus", None)
    if hasattr(bus, "send_soon"):
        bus.send_soon(app.state.db, events)
    else:
        app.state.db.outbox_wakeup.set()


def make_event(type_: str, order_id: str | None, payload: dict, event_id: str | None = None) -> dict:
    """A new event of ``type_`` (its subject) carrying the current trace context."""
    stream = type_.split(".", 1)[0].upper()
    if stream not in STREAMS:
        raise ValueError(f"event type {type_!r} belongs to no stream; valid prefixes: "
                         f"{', '.join(s.lower() for s in STREAMS)}")
    return {
        "type": type_,
        "order_id": order_id,
        "event_id": event_id or str(uuid.uuid4()),
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "traceparent": tracing.traceparent(),
        "payload": payload,
    }


class Bus:
    """A NATS connection with JetStream, its streams ensured."""

    def __init__(self, url: str, name: str):
        self.url = url
        self.name = name
        self.nc: nats.NATS | None = None
        self.js = None
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._sent: list[str] = []
        self._marker: asyncio.Task | None = None
        self._stopping = False

    async def connect(self) -> None:
        self.nc = await nats.connect(self.url, name=self.name, max_reconnect_attempts=-1,
                                     reconnect_time_wait=0.5, connect_timeout=3)
        self.js = self.nc.jetstream(timeout=5)
        await self.ensure_streams()

    async def ensure_streams(self) -> None:
        """Create the streams if missing (file storage: they are the event store)."""
        for name, subjects in STREAMS.items():
            config = api.StreamConfig(name=name, subjects=subjects, storage=api.StorageType.FILE,
                                      retention=api.RetentionPolicy.LIMITS, duplicate_window=300.0,
                                      max_age=7 * 24 * 3600.0)
            try:
                await self.js.stream_info(name)
            except nats.js.errors.NotFoundError:
                try:
                    await self.js.add_stream(config)
                except nats.js.errors.BadRequestError:
                    pass  # another replica created it first

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def publish(self, event: dict) -> None:
        """Publish ``event`` to JetStream (de-duplicated by event id) and wait for the ack."""
        headers = {"Nats-Msg-Id": event["event_id"], "traceparent": event.get("traceparent") or ""}
        await self.js.publish(subject_of(event), json.dumps(event).encode(), headers=headers)
        metrics.event_published(event["type"])

    def subscribe(self, db: Database | None, durable: str, stream: str, subjects: list[str], handler: Handler,
                  workers: int = 4) -> None:
        """Consume ``subjects`` of ``stream`` with durable consumer ``durable`` in background tasks."""
        self._tasks.append(asyncio.create_task(self._consume(db, durable, stream, subjects, handler, workers)))

    async def _consume(self, db, durable, stream, subjects, handler, workers) -> None:
        subjects = filter_subjects(subjects)
        config = api.ConsumerConfig(durable_name=durable, filter_subjects=subjects,
                                    ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30.0, max_ack_pending=1000,
                                    deliver_policy=api.DeliverPolicy.ALL)
        while not self._stopping:
            try:
                # Create the consumer, or update an existing one's subjects (a new release may
                # consume more); binding alone would keep the old filter of an older state folder.
                await self.js.add_consumer(stream, config)
                sub = await self.js.pull_subscribe(subjects[0], durable=durable, stream=stream, config=config)
                break
            except Exception as exc:  # stream or server not ready yet: retry
                log.warning("cannot subscribe yet", extra={"fields": {"durable": durable, "error": str(exc)}})
                await asyncio.sleep(0.5)
        else:
            return
        await asyncio.gather(*(self._worker(sub, db, durable, handler) for _ in range(workers)))

    async def _worker(self, sub, db: Database, durable: str, handler: Handler) -> None:
        while not self._stopping:
            try:
                # batch=1: nats-py waits for a *full* batch (until the timeout) once the first
                # message arrived, which would add up to a second per saga step when idle.
                msgs = await sub.fetch(batch=1, timeout=5.0)
            except nats.errors.TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fetch failed", extra={"fields": {"durable": durable, "error": str(exc)}})
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                await self._handle(msg, db, durable, handler)

    async def _handle(self, msg, db: Database, durable: str, handler: Handler) -> None:
        try:
            event = json.loads(msg.data)
            if not isinstance(event, dict) or not isinstance(event.get("event_id"), str):
                raise ValueError("event without event_id")
        except ValueError as exc:
            log.error("dropping malformed event", extra={"fields": {"subject": msg.subject, "error": str(exc)}})
            metrics.event_consumed(type_of_subject(msg.subject), "malformed")
            await msg.term()
            return
        token = tracing.start(event.get("traceparent"))
        try:
            if db is None:
                # No database: the handler's effect must be idempotent by itself.
                await handler(None, event)
                outcome = "ok"
            else:
                async with db.sessions() as session, session.begin():
                    if await mark_processed(session, event["event_id"], durable):
                        await handler(session, event)
                        outcome = "ok"
                    else:
                        outcome = "duplicate"
                await self.send_committed(db, take_committed(session))
            await msg.ack()
            metrics.event_consumed(type_of_subject(msg.subject), outcome)
            log.info("event handled", extra={"fields": {"subject": msg.subject, "order_id": event.get("order_id"),
                                                         "event_id": event["event_id"], "outcome": outcome}})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("event handling failed; will be redelivered",
                          extra={"fields": {"subject": msg.subject, "event_id": event["event_id"]}})
            metrics.event_consumed(type_of_subject(msg.subject), "error")
            try:
                await msg.nak(delay=1.0)
            except Exception:
                pass
            del exc
        finally:
            tracing.current.reset(token)

    async def send_committed(self, db: Database, events: list[dict]) -> None:
        """Publish events whose outbox rows just committed, then mark the rows sent. On failure
        the rows stay pending and the relay sends them later (duplicates are dropped by id)."""
        if not events:
            return
        try:
            for event in events:
                await self.publish(event)
                self._sent.append(event["event_id"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("direct publish failed; the relay will retry", extra={"fields": {"error": str(exc)}})
        if self._sent and self._marker is None:
            self._marker = asyncio.create_task(self._mark_sent(db))

    async def _mark_sent(self, db: Database) -> None:
        """Mark published rows sent, many per statement. If this process dies first, the relay
        publishes those rows again and JetStream drops them as duplicates (same Nats-Msg-Id)."""
        try:
            await asyncio.sleep(0.1)
            while self._sent:
                ids, self._sent = self._sent[:500], self._sent[500:]
                try:
                    async with db.sessions() as session, session.begin():
                        await session.execute(update(OutboxEvent).where(OutboxEvent.event_id.in_(ids))
                                              .values(sent_at=utcnow()))
                except Exception as exc:  # the relay will resend them; duplicates are dropped
                    log.warning("marking outbox rows sent failed", extra={"fields": {"error": str(exc)}})
        finally:
            self._marker = None
            if self._sent and not self._stopping:
                self._marker = asyncio.create_task(self._mark_sent(db))

    def send_soon(self, db: Database, events: list[dict]) -> None:
        """:meth:`send_committed` in the background (a request need not wait for the broker)."""
        if events:
            task = asyncio.create_task(self.send_committed(db, events))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def start_relay(self, db: Database) -> None:
        """Publish this service's outbox in a background task."""
        self._tasks.append(asyncio.create_task(OutboxRelay(db, self).run()))

    async def history(self, order_id: str | None = None, streams: list[str] | None = None,
                      limit: int = 100_000) -> list[dict]:
        """Replay events (of one order if ``order_id``) from the streams, oldest first.

        One order's events are found by subject (``<stream prefix>.*.<order id>``): the broker
        reads only that order's messages, however long the streams are; the streams are asked
        concurrently. Without an order id, every event is read (an operator's full replay)."""
        if order_id is not None and not _SUBJECT_TOKEN.match(order_id):
            return []
        per_stream = await asyncio.gather(*(self._stream_history(stream, order_id, limit)
                                            for stream in streams or list(STREAMS)))
        events = [event for found in per_stream for event in found]
        events.sort(key=lambda e: e.get("occurred_at") or "")
        return events

    async def _stream_history(self, stream: str, order_id: str | None, limit: int) -> list[dict]:
        prefix = STREAMS[stream][0].removesuffix(">")
        subject = f"{prefix}*.{order_id}" if order_id is not None else STREAMS[stream][0]
        sub = await self.js.pull_subscribe(
            subject, stream=stream,
            config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL,
                                      inactive_threshold=10.0))
        events: list[dict] = []
        try:
            pending = (await sub.consumer_info()).num_pending
            seen = 0
            while seen < pending and seen < limit:
                try:
                    # Ask for exactly what is left, so fetch never waits for a fuller batch.
                    msgs = await sub.fetch(batch=min(500, pending - seen, limit - seen), timeout=2.0)
                except nats.errors.TimeoutError:
                    break
                for msg in msgs:
                    seen += 1
                    try:
                        event = json.loads(msg.data)
                    except ValueError:
                        continue
                    if isinstance(event, dict) and (order_id is None or event.get("order_id") == order_id):
                        events.append(event)
        finally:
            await sub.unsubscribe()
        return events

    async def close(self) -> None:
        self._stopping = True
        if self._background:
            await asyncio.wait(self._background, timeout=3)
        if self._marker is not None:
            await asyncio.wait([self._marker], timeout=3)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nc is not None:
            try:
                await self.nc.close()
            except Exception:
                pass


class OutboxRelay:
    """Sends pending outbox rows to JetStream, oldest first; safe with several replicas.

    Rows are normally published right after their commit (:meth:`Bus.send_committed`); the
    relay takes those still pending after a grace period: left by a crash, or by a broker outage.
    """

    grace = timedelta(seconds=2)

    def __init__(self, db: Database, bus: Bus, batch: int = 100):
        self.db = db
        self.bus = bus
        self.batch = batch

    async def run(self) -> None:
        while True:
            try:
                sent = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay failed; retrying", extra={"fields": {"error": str(exc)}})
                sent = 0
                await asyncio.sleep(0.5)
            if sent < self.batch:
                await asyncio.sleep(1.0)

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were sent. A failed publish ends the batch but
        keeps the rows published before it (marked sent in the same commit): rolling them back
        too would let a broker that times out now and then stall the outbox for good."""
        sent = 0
        async with self.db.sessions() as session, session.begin():
            rows = (await session.scalars(
                select(OutboxEvent).where(OutboxEvent.sent_at.is_(None), OutboxEvent.created_at < utcnow() - self.grace)
                .order_by(OutboxEvent.id)
                .limit(self.batch).with_for_update(skip_locked=True))).all()
            for row in rows:
                try:
                    await self.bus.publish(row.data)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not sent:
                        raise
                    log.warning("outbox relay: publish failed; the rows sent before it are kept",
                                extra={"fields": {"error": str(exc), "sent": sent}})
                    break
                row.sent_at = utcnow()
                sent += 1
        return sent
