"""The catalog in the monolith's PostgreSQL database, behind the product service's store
interface (so the product routes are reused unchanged)."""

from __future__ import annotations

from sqlalchemy import String, create_engine, func, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from services.common.db import Base, async_url
from services.common.demo import CATALOG


class ProductRow(Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(String(2000), default="")
    price_cents: Mapped[int]
    categories: Mapped[list] = mapped_column(JSONB, default=list)


def _doc(row: ProductRow) -> dict:
    return {"_id": row.id, "name": row.name, "description": row.description, "price_cents": row.price_cents,
            "categories": list(row.categories or [])}


class PgCatalogStore:
    """Same methods as :class:`services.product.store.CatalogStore`; blocking, run in a thread."""

    def __init__(self, database_url: str):
        sync_url = async_url(database_url)  # psycopg 3 serves both sync and async engines
        self.engine = create_engine(sync_url, pool_size=5, max_overflow=10, pool_pre_ping=True,
                                    hide_parameters=True)

    def seed(self) -> None:
        rows = [{k: v for k, v in p.items() if k != "initial_stock"} for p in CATALOG]
        with Session(self.engine) as session, session.begin():
            session.execute(insert(ProductRow).values(rows).on_conflict_do_nothing())

    def get(self, product_id: str) -> dict | None:
        with Session(self.engine) as session:
            row = session.get(ProductRow, product_id)
            return _doc(row) if row else None

    def search(self, q: str | None, category: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
        query = select(ProductRow)
        if q:
            escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(ProductRow.name.ilike(f"%{escaped}%", escape="\\"))
        if category:
            query = query.where(ProductRow.categories.contains([category]))
        with Session(self.engine) as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.scalars(query.order_by(ProductRow.id).limit(limit).offset(offset)).all()
            return [_doc(r) for r in rows], int(total)

    def insert(self, doc: dict) -> bool:
        values = {"id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}
        with Session(self.engine) as session, session.begin():
            result = session.execute(insert(ProductRow).values(values).on_conflict_do_nothing()
                                     .returning(ProductRow.id))
            return result.first() is not None

    def update(self, product_id: str, changes: dict) -> dict | None:
        with Session(self.engine) as session, session.begin():
            row = session.get(ProductRow, product_id, with_for_update=True)
            if row is None:
                return None
            for key, value in changes.items():
                setattr(row, key, value)
            session.flush()
            return _doc(row)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()
