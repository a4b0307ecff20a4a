"""The catalog store: pymongo API over montydb (embedded, SQLite files) or MongoDB (``MONGO_URL``).

Calls are blocking, so they run in a worker thread; one lock per process serialises access
to the embedded engine (SQLite's own file lock serialises writers across replicas).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from services.common.demo import CATALOG


class CatalogStore:
    def __init__(self, mongo_url: str | None, state_dir: Path):
        self._lock = threading.Lock()
        if mongo_url:
            import pymongo

            self.client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=3000)
            self.embedded = False
        else:
            from montydb import MontyClient, set_storage

            (Path(state_dir) / "product").mkdir(parents=True, mode=0o700, exist_ok=True)   # the owner's catalog
            path = Path(state_dir) / "product" / "montydb"
            path.mkdir(mode=0o700, exist_ok=True)
            if not (path / "monty.storage.cfg").exists():
                set_storage(str(path), storage="sqlite", use_bson=False)
            self.client = MontyClient(str(path))
            self.embedded = True
        self.products = self.client["cloudmart"]["products"]

    def _run(self, fn, *args):
        for attempt in range(20):
            try:
                with self._lock:
                    return fn(*args)
            except Exception as exc:  # SQLite busy while another replica writes: retry briefly
                if "locked" not in str(exc).lower() or attempt == 19:
                    raise
                time.sleep(0.05)

    def seed(self) -> None:
        """Insert the demo catalog where missing (idempotent; replicas may race)."""
        def do():
            for item in CATALOG:
                doc = {k: v for k, v in item.items() if k not in ("id", "initial_stock")}
                self.products.update_one({"_id": item["id"]}, {"$setOnInsert": doc}, upsert=True)
        self._run(do)

    def get(self, product_id: str) -> dict | None:
        return self._run(self.products.find_one, {"_id": product_id})

    def search(self, q: str | None, category: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
        query: dict = {}
        if q:
            query["name"] = {"$regex": re.escape(q), "$options": "i"}
        if category:
            query["categories"] = category

        def do():
            total = self.products.count_documents(query)
            docs = list(self.products.find(query).sort("_id", 1).skip(offset).limit(limit))
            return docs, total
        return self._run(do)

    def insert(self, doc: dict) -> bool:
        """Insert; False if the id exists."""
        def do():
            if self.products.find_one({"_id": doc["_id"]}) is not None:
                return False
            self.products.insert_one(doc)
            return True
        try:
            return self._run(do)
        except Exception as exc:
            if "duplicate" in str(exc).lower():
                return False
            raise

    def update(self, product_id: str, changes: dict) -> dict | None:
        def do():
            if changes:
                self.products.update_one({"_id": product_id}, {"$set": changes})
            return self.products.find_one({"_id": product_id})
        return self._run(do)

    def ping(self) -> None:
        self._run(self.products.count_documents, {})
