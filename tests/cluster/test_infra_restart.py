"""A crashed PostgreSQL, Redis or NATS is started again by the supervisor, with its data."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from services.infra import pid_alive


@pytest.mark.parametrize("kind", ["redis", "nats", "postgres"])
def test_a_killed_server_comes_back_and_cloudmart_serves_again(cloudmart, wait_for, kind):
    before = cloudmart.target.status()
    server = before["infra"][kind]
    assert server["alive"]
    os.kill(server["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(server["pid"]), timeout_s=10)

    def back():
        status = cloudmart.target.status()
        info = status["infra"][kind]
        return status if info["alive"] and info["pid"] != server["pid"] and status["ready"] else None

    status = wait_for(back, timeout_s=60)
    info = status["infra"][kind]
    assert info["restarts"] == before["infra"][kind]["restarts"] + 1
    assert info["port"] == server["port"], "restarted on its own port: the services' URLs still hold"
    assert not pid_alive(server["pid"]), "the dead server was reaped, not left <defunct>"
    # Every part works again: a signed-in read through the gateway (auth, Redis, product) and a
    # write that goes through PostgreSQL and an event over NATS.
    wait_for(lambda: cloudmart.cm.get("/api/products").status_code == 200, timeout_s=30)
    order = wait_for(lambda: _checkout(cloudmart.cm), timeout_s=60)
    assert wait_for(lambda: _terminal(cloudmart.cm, order), timeout_s=60) == "confirmed"


def _checkout(cm):
    pid = cm.get("/api/products").json()["items"][0]["id"]
    resp = cm.post("/api/orders", json={"items": [{"product_id": pid, "quantity": 1}],
                                        "payment": {"card_number": "4242424242424242"}},
                   headers={"Idempotency-Key": str(uuid.uuid4())})
    return resp.json()["id"] if resp.status_code == 202 else None


def _terminal(cm, order_id):
    state = cm.get(f"/api/orders/{order_id}").json().get("status")
    return state if state in ("confirmed", "cancelled") else None
