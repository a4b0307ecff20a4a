"""The product service's MongoDB path (pymongo against a real `mongod`), where one is installed.

Locally and in CI the catalog lives in montydb (embedded, SQLite files, pymongo's API); only the
kind target runs a real MongoDB. No MongoDB server installs from PyPI, Debian or npm here (Debian
dropped it; the npm and PyPI wrappers download a binary from MongoDB at run time), so this test
runs only when `mongod` is on PATH, or `MONGOD` names one; `CLOUDMART_REQUIRE_MONGOD=1` makes
its absence a failure (for a CI job that installs MongoDB itself).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import httpx
import pytest
from svc_stack import free_port

from services.common.demo import CATALOG


def _mongod() -> str | None:
    return os.environ.get("MONGOD") or shutil.which("mongod")


@pytest.fixture(scope="module")
def mongo_url(tmp_path_factory):
    binary = _mongod()
    if binary is None:
        if os.environ.get("CLOUDMART_REQUIRE_MONGOD") == "1":
            pytest.fail("CLOUDMART_REQUIRE_MONGOD=1 but no mongod on PATH (set MONGOD=/path/to/mongod)")
        pytest.skip("no mongod on PATH: the MongoDB path is exercised on the kind target only "
                    "(services/README.md, 'The document store')")
    folder = tmp_path_factory.mktemp("mongod")
    port = free_port()
    log = open(folder / "mongod.log", "ab")
    proc = subprocess.Popen([binary, "--dbpath", str(folder), "--bind_ip", "127.0.0.1", "--port", str(port),
                             "--quiet"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    url = f"mongodb://127.0.0.1:{port}/"
    try:
        import pymongo

        deadline = time.monotonic() + 60
        while True:
            try:
                pymongo.MongoClient(url, serverSelectionTimeoutMS=500).admin.command("ping")
                break
            except pymongo.errors.PyMongoError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mongod did not start: {(folder / 'mongod.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_catalog_store_on_a_real_mongod(mongo_url, tmp_path):
    from services.product.store import CatalogStore

    store = CatalogStore(mongo_url, tmp_path)
    assert store.embedded is False
    store.seed()
    store.seed()                                          # idempotent
    items, total = store.search(None, None, limit=500, offset=0)
    assert total == len(CATALOG) and [d["_id"] for d in items] == sorted(c["id"] for c in CATALOG)
    glass, n = store.search("GLASS", None, limit=5, offset=0)
    assert n == 2 and [d["name"] for d in glass] == ["Bamboo Glass Jar", "Sunglasses"]
    assert store.insert({"_id": "MONGOD0001", "name": "Test", "price_cents": 1}) is True
    assert store.insert({"_id": "MONGOD0001", "name": "Again", "price_cents": 2}) is False
    assert store.update("MONGOD0001", {"price_cents": 5})["price_cents"] == 5


def test_product_service_serves_from_a_real_mongod(mongo_url, stack):
    svc = stack.add("product-mongod", {"MONGO_URL": mongo_url}, module="product")
    svc.start()
    try:
        svc.wait_ready()
        resp = httpx.get(svc.url + "/api/products", params={"q": "glass", "limit": 5})
        assert resp.status_code == 200
        assert [p["name"] for p in resp.json()["items"]] == ["Bamboo Glass Jar", "Sunglasses"]
        assert httpx.get(svc.url + "/api/products/OLJCESPC7Z").json()["price_cents"] == 1999
    finally:
        svc.stop()
        del stack.services["product-mongod"]
