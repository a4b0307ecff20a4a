"""PostgreSQL access (async SQLAlchemy 2 over psycopg 3) and the two tables every saga
participant has: the transactional outbox and the processed-events ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import JSON, BigInteger, DateTime, String, event, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every service's tables (each service creates only its own)."""

    type_annotation_map = {dict[str, Any]: JSON().with_variant(JSONB(), "postgresql"),
                           datetime: DateTime(timezone=True)}


class OutboxEvent(Base):
    """An event written in the same transaction as the state change it announces."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(128))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None, index=True)


class ProcessedEvent(Base):
    """Events already applied by a consumer: written in the effect's transaction (exactly-once effect)."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxSession(Session):
    """A session that remembers the outbox events of its committed transactions, so they can be
    published right after the commit (the relay remains the fallback for a crash in between)."""


@event.listens_for(OutboxSession, "after_commit")
def _outbox_committed(session: Session) -> None:
    staged = session.info.pop("outbox_staged", [])
    if staged:
        session.info.setdefault("outbox_committed", []).extend(staged)


@event.listens_for(OutboxSession, "after_rollback")
def _outbox_rolled_back(session: Session) -> None:
    session.info.pop("outbox_staged", None)


def take_committed(session) -> list[dict]:
    """The events of this session's committed transactions not yet handed out."""
    return session.info.pop("outbox_committed", [])


def async_url(url: str) -> str:
    """``postgresql://…`` → ``postgresql+psycopg://…`` (psycopg 3, async)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str, pool_size: int = 10):
        self.engine: AsyncEngine = create_async_engine(
            async_url(url), pool_size=pool_size, max_overflow=20, pool_pre_ping=True, pool_timeout=10,
            hide_parameters=True)  # errors and logs never print bound values (card numbers, hashes)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, sync_session_class=OutboxSession)
        self.outbox_wakeup = asyncio.Event()

    async def create_tables(self, tables: list) -> None:
        """Create the given tables if missing, and bring an older release's tables up to date:
        add the nullable columns the model has and the table lacks (e.g. ``card_token``), and
        widen to BIGINT what the model declares BigInteger but is still INTEGER (e.g.
        ``total_cents``). An advisory lock keeps replicas from racing."""
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
            await conn.run_sync(Base.metadata.create_all, tables=[t.__table__ for t in tables])
            for table in (t.__table__ for t in tables):
                existing = dict((await conn.execute(text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = :t"), {"t": table.name})).all())
                for column in table.columns:
                    if column.name not in existing and column.nullable and not column.primary_key:
                        kind = column.type.compile(dialect=conn.dialect)
                        await conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
                    elif isinstance(column.type, BigInteger) and existing.get(column.name) == "integer":
                        await conn.execute(text(f'ALTER TABLE "{table.name}" ALTER COLUMN "{column.name}" TYPE BIGINT'))

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


_current: dict[str, Database] = {}


def set_database(db: Database) -> None:
    _current["db"] = db


def get_database() -> Database:
    return _current["db"]


async def get_session() -> AsyncIterator[AsyncSession]:
    """A session per request (dependency)."""
    async with get_database().sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def mark_processed(session: AsyncSession, event_id: str, consumer: str) -> bool:
    """Record ``event_id`` as processed by ``consumer``; False if it already was (a redelivery)."""
    result = await session.execute(
        insert(ProcessedEvent).values(event_id=event_id, consumer=consumer, processed_at=utcnow())
        .on_conflict_do_nothing().returning(ProcessedEvent.event_id))
    return result.first() is not None


def add_to_outbox(session: AsyncSession, event: dict, delivered: bool = False) -> OutboxEvent:
    """Stage ``event`` for publication; it is sent only if the surrounding transaction commits.
    ``delivered``: nobody is to be sent it (the row is kept as history only, already marked sent)."""
    row = OutboxEvent(event_id=event["event_id"], subject=event["type"], data=event,
                      sent_at=utcnow() if delivered else None)
    session.add(row)
    if not delivered:
        session.info.setdefault("outbox_staged", []).append(event)
    return row
