"""Issue items 1, 2, 3 and 10 replayed by a second local OS user (`nobody`) against a live CloudMart.

The attacks of the report, with only the standard library, as `nobody` (second_user.py): reading
the state folder (credentials, logs with card numbers, the Redis AOF), Redis and NATS without
credentials or with guessed ones, forged saga events, a poisoned price, and the gateway's admin
API. Each must fail to do harm; the checkout the attacker makes meanwhile through the gateway (as
the demo customer, whose password is public) is priced and charged from the owner's data.
Skipped, with the reason, where the tests cannot act as another user (not root, or no `nobody`).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import uuid
from pathlib import Path

import pytest
import redis

from second_user import as_nobody, second_user
from services.infra import load_infra, pg_layout

pytestmark = [pytest.mark.live, pytest.mark.skipif(second_user() is not None, reason=str(second_user()))]

DEMO_PASSWORD = "cloudmart"     # public: the course prints it
CARD = "4242424242424242"


@pytest.fixture(scope="module")
def shared(start_cloudmart):
    """A CloudMart whose state folder sits in a folder every user may pass through (as a home
    folder or /tmp is), so that only CloudMart's own modes stand between `nobody` and its files."""
    parent = Path(tempfile.mkdtemp(prefix="cloudmart-shared-"))
    os.chmod(parent, 0o711)
    try:
        with start_cloudmart(parent) as running:
            yield running
    finally:
        import shutil

        shutil.rmtree(parent, ignore_errors=True)


def _secret_files(state: Path) -> list[Path]:
    """Every file of the state folder that holds a credential, a key, a log or stored data."""
    return sorted(p for p in state.rglob("*") if p.is_file() and not p.is_symlink())


def _order_as_nobody(gateway: str) -> tuple[str, dict, str]:
    """Sign in as the demo customer through the gateway and place one order, as nobody."""
    token_resp, listing = as_nobody([
        {"do": "http", "method": "POST", "url": gateway + "/api/auth/token",
         "form": {"grant_type": "password", "username": "alice", "password": DEMO_PASSWORD}},
        {"do": "http", "method": "GET", "url": gateway + "/api/products"},
    ])
    assert token_resp["status"] == 200, token_resp
    token = json.loads(token_resp["body"])["access_token"]
    product = json.loads(listing["body"])["items"][0]
    (placed,) = as_nobody([{"do": "http", "method": "POST", "url": gateway + "/api/orders",
                            "headers": {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
                            "body": {"items": [{"product_id": product["id"], "quantity": 10}],
                                     "payment": {"card_number": CARD}}}])
    assert placed["status"] == 202, placed
    return json.loads(placed["body"])["id"], product, token


def _settled_order(shared, wait_for, order_id: str) -> dict:
    def done():
        order = shared.cm.get(f"/api/orders/{order_id}").json()
        return order if order.get("status") in ("confirmed", "cancelled") else None

    return wait_for(done, 60)


def test_nobody_can_neither_list_nor_read_the_state_folder(shared):
    """Item 10 (and the credentials behind 2 and 3): the folder is 0700 to its owner."""
    state = shared.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = _secret_files(state)
    wanted = {"infra/infra.json", "infra/nats.conf", "infra/redis-users.acl", "supervisor.json", "logs/order-0.log"}
    assert wanted <= {str(p.relative_to(state)) for p in files}
    results = as_nobody([{"do": "listdir", "path": str(state)}, *({"do": "read", "path": str(p)} for p in files)])
    assert results[0]["outcome"] == "denied", results[0]
    read = [str(p) for p, r in zip(files, results[1:]) if r["outcome"] != "denied"]
    assert read == [], f"nobody read: {read}"
    # PostgreSQL's data (relocated outside the state folder when CloudMart runs as root).
    data_dir = pg_layout(state).data_dir
    (pg,) = as_nobody([{"do": "listdir", "path": str(data_dir)}])
    assert pg["outcome"] == "denied", (data_dir, pg)


def test_each_file_is_private_even_in_a_folder_opened_to_others(shared):
    """Defence in depth for item 10: should the owner open the state folder to others (a `chmod
    o+x` to share a notebook, say), every file with content stays unreadable by its own mode."""
    state = shared.state_dir
    files = [p for p in _secret_files(state) if p.stat().st_size > 0]
    os.chmod(state, 0o711)   # others may pass through, not list
    try:
        results = as_nobody([{"do": "read", "path": str(p)} for p in files])
    finally:
        os.chmod(state, 0o700)
    read = [str(p.relative_to(state)) for p, r in zip(files, results) if r["outcome"] != "denied"]
    assert read == [], f"nobody read: {read}"


def test_redis_refuses_nobody_and_a_poisoned_price_is_never_charged(shared, wait_for):
    """Item 3: `HSET auth:user:eve … roles '["admin"]'` and `SET product:<id> {…"price_cents":1…}`."""
    port = shared.target.status()["infra"]["redis"]["port"]
    poisoned = json.dumps({"id": "X", "name": "watch", "price_cents": 1})
    attempts = [
        {"do": "redis", "port": port, "args": ["HSET", "auth:user:eve", "roles", '["admin"]']},
        {"do": "redis", "port": port, "args": ["KEYS", "*"]},
        *({"do": "redis", "port": port, "args": ["PING"], "user": user, "password": guess}
          for user, guess in [("default", ""), ("admin", DEMO_PASSWORD), ("product", "product"), ("course", "course")]),
    ]
    first = as_nobody(attempts)
    assert first[0]["reply"].startswith("-NOAUTH") and first[1]["reply"].startswith("-NOAUTH"), first[:2]
    assert all(r["reply"].startswith("-WRONGPASS") for r in first[2:]), first[2:]
    order_id, product, _ = _order_as_nobody(shared.cm.gateway_url)
    (poison,) = as_nobody([{"do": "redis", "port": port, "args": ["SET", f"product:{product['id']}", poisoned]}])
    assert poison["reply"].startswith("-NOAUTH"), poison
    order = _settled_order(shared, wait_for, order_id)
    assert order["total_cents"] == 10 * product["price_cents"] > 10
    admin = load_infra(shared.state_dir)
    owner = redis.Redis.from_url(admin.redis_url, decode_responses=True)
    assert not owner.exists("auth:user:eve")
    cached = owner.get(f"product:{product['id']}")
    assert cached is None or json.loads(cached)["price_cents"] == product["price_cents"]


def test_nats_refuses_nobody_so_no_event_is_forged_or_read(shared, wait_for):
    """Item 2: a forged `orders.payment_requested` of 1 cent, a forged `users.registered` with
    the admin role, and `$JS.API.STREAM.MSG.GET.ORDERS` for the card numbers."""
    port = shared.target.status()["infra"]["nats"]["port"]
    order_id, product, token = _order_as_nobody(shared.cm.gateway_url)
    forged = json.dumps({"type": "orders.payment_requested", "order_id": order_id, "amount_cents": 1})
    admin_user = json.dumps({"type": "users.registered", "username": "eve", "roles": ["admin"]})
    results = as_nobody([
        {"do": "nats", "port": port, "lines": [f"PUB orders.payment_requested {len(forged)}", forged]},
        {"do": "nats", "port": port, "lines": [f"PUB users.registered {len(admin_user)}", admin_user]},
        {"do": "nats", "port": port, "lines": ["SUB _INBOX.x 1", "PUB $JS.API.STREAM.MSG.GET.ORDERS _INBOX.x 11",
                                               '{"seq": 1}']},
        *({"do": "nats", "port": port, "user": user, "password": guess, "lines": []}
          for user, guess in [("admin", DEMO_PASSWORD), ("order", "order"), ("course", "course")]),
    ])
    for r in results:
        assert r["auth_required"], r
        assert "-ERR 'Authorization Violation'" in r["reply"] and "MSG " not in r["reply"], r
    order = _settled_order(shared, wait_for, order_id)
    assert order["status"] == "confirmed", order
    payment = shared.cm.get(f"/api/payments/{order_id}").json()
    assert payment["status"] == "authorized" and payment["amount_cents"] == order["total_cents"] == 10 * product["price_cents"]
    eve = as_nobody([{"do": "http", "method": "POST", "url": shared.cm.gateway_url + "/api/auth/token",
                      "form": {"grant_type": "password", "username": "eve", "password": "anything"}}])[0]
    assert eve["status"] == 401, eve


def test_the_gateway_admin_api_is_not_for_nobody(shared):
    """Item 1: as nobody, the gateway's admin API rewrote a route to serve the signing key. Here
    only read: a local user who can read the admin API can also rewrite it."""
    status = shared.target.status()
    port = status.get("gateway_admin_port")
    if not port:
        pytest.skip("the gateway has no admin TCP port (a Unix socket or none): nothing to reach by port")
    (answer,) = as_nobody([{"do": "http", "method": "GET", "url": f"http://127.0.0.1:{port}/config/"}])
    if answer["status"]:
        pytest.xfail(f"item 1 open: the gateway admin API on 127.0.0.1:{port} answered {answer['status']} to nobody "
                     "(the data plane's admin moves to a Unix socket in a 0700 folder)")
    assert answer["status"] == 0, answer
