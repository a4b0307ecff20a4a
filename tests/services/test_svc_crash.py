"""Crash test: SIGKILL saga participants mid-flight, restart them, and check that every accepted
order reached a terminal state with one charge per confirmed order and stock conserved."""

from __future__ import annotations

import random
import threading
import time
import uuid

import httpx
import pytest
from svc_stack import wait_for

PRODUCTS = {"1YMWWN1N4O": 10999, "L9ECAV7KIM": 8999}
N_ORDERS = 30


def _place_with_retry(stack, headers, body, key, deadline):
    """A client that retries with the SAME Idempotency-Key until the order service answers."""
    while time.monotonic() < deadline:
        try:
            response = httpx.post(stack.url("order") + "/api/orders", json=body, timeout=5,
                                  headers={**headers, "Idempotency-Key": key})
            if response.status_code == 202:
                return response.json()["id"]
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"order with key {key} never accepted")


@pytest.mark.slow
def test_killing_services_mid_saga_loses_nothing_and_charges_once(stack, headers):
    inv = stack.url("inventory") + "/api/inventory/"
    before = {pid: httpx.get(inv + pid).json() for pid in PRODUCTS}
    rng = random.Random(7)
    plans = []
    for i in range(N_ORDERS):
        items = [{"product_id": pid, "quantity": rng.randint(1, 2)} for pid in PRODUCTS if rng.random() < 0.7] \
            or [{"product_id": "1YMWWN1N4O", "quantity": 1}]
        card = "4000000000000002" if i % 5 == 0 else "4242424242424242"
        plans.append(({"items": items, "payment": {"card_number": card}}, str(uuid.uuid4())))

    order_ids: list[str] = []
    errors: list[BaseException] = []
    deadline = time.monotonic() + 90

    def client(chunk):
        try:
            for body, key in chunk:
                order_ids.append(_place_with_retry(stack, headers["alice"], body, key, deadline))
                # A duplicate retry of an accepted request must not create a second order.
                if key.endswith(("0", "5")):
                    order_ids.append(_place_with_retry(stack, headers["alice"], body, key, deadline))
                time.sleep(0.15)  # spread the orders over the kills
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(plans[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    # Kill the consumers and the orchestrator while orders flow; restart each.
    for victim in ("payment", "inventory", "order"):
        time.sleep(0.6)
        stack.services[victim].kill()
        time.sleep(0.5)
        stack.services[victim].start()
        stack.services[victim].wait_ready()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors

    unique_ids = set(order_ids)
    assert len(unique_ids) == N_ORDERS, "a retried key created a second order or an order was lost"

    def all_terminal():
        orders = {oid: httpx.get(f"{stack.url('order')}/api/orders/{oid}", headers=headers["alice"]).json()
                  for oid in unique_ids}
        return orders if all(o["status"] in ("confirmed", "cancelled") for o in orders.values()) else None
    orders = wait_for(all_terminal, timeout_s=90, interval_s=0.5)

    payments = httpx.get(stack.url("payment") + "/api/payments", headers=headers["admin"],
                         params={"limit": 500}).json()
    by_order: dict[str, list] = {}
    for p in payments:
        by_order.setdefault(p["order_id"], []).append(p)
    sold = {pid: 0 for pid in PRODUCTS}
    for oid, order in orders.items():
        charges = by_order.get(oid, [])
        assert len(charges) <= 1, f"order {oid} charged {len(charges)} times"
        if order["status"] == "confirmed":
            assert len(charges) == 1 and charges[0]["status"] == "authorized"
            assert charges[0]["amount_cents"] == order["total_cents"]
            for line in order["items"]:
                sold[line["product_id"]] += line["quantity"]
        else:
            assert not charges or charges[0]["status"] in ("declined", "refunded")
    assert any(o["status"] == "confirmed" for o in orders.values())
    assert any(o["status"] == "cancelled" for o in orders.values())

    def stock_settled():
        now = {pid: httpx.get(inv + pid).json() for pid in PRODUCTS}
        return now if all(s["reserved"] == 0 for s in now.values()) else None
    after = wait_for(stock_settled, timeout_s=30)
    for pid in PRODUCTS:
        total_before = before[pid]["available"] + before[pid]["reserved"] + before[pid]["sold"]
        total_after = after[pid]["available"] + after[pid]["reserved"] + after[pid]["sold"]
        assert total_after == total_before, f"{pid}: stock not conserved"
        assert after[pid]["sold"] - before[pid]["sold"] == sold[pid]
