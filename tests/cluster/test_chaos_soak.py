"""Chaos soak: 60 s of open-loop checkout load while a replica is killed every 5 s.

Afterwards every accepted order is confirmed or cancelled, no order is charged twice, stock is
conserved, at least 8 kills really happened, and the gateway's error rate during the run is
bounded (and reported, printed as JSON).
"""

from __future__ import annotations

import collections
import json
import random
import threading
import time

import pytest

from cluster.handle import CloudMart
from cluster.local import TargetError

pytestmark = [pytest.mark.live, pytest.mark.slow]

SOAK_S = 60
KILL_EVERY_S = 5
RPS = 10
CHAOS_DEPLOYMENTS = ("order", "payment")   # each runs 2 replicas during the soak
MIN_KILLS = 8
# Measured 2.7 % and 2.4 % (15 and 13 of 548 checkouts, 11 and 12 kills) on a busy 2-core machine; the
# Little's-law bound below is the sharper one, this one catches a gateway that fails wholesale.
MAX_ERROR_RATE = 0.10


def _restarts(cm: CloudMart) -> int:
    """Restarts of every order and payment replica so far (the supervisor counts them)."""
    deps = cm.status()["deployments"]
    return sum(r["restarts"] for name in CHAOS_DEPLOYMENTS for r in deps[name]["replicas"])


def _all_pages(admin: CloudMart, path: str) -> list[dict]:
    out, offset = [], 0
    while True:
        page = admin.get(path, params={"limit": 500, "offset": offset})
        assert page.status_code == 200, page.text
        items = page.json()
        out += items
        if len(items) < 500:
            return out
        offset += 500


def _stock(admin: CloudMart) -> dict[str, dict]:
    resp = admin.get("/api/inventory")
    assert resp.status_code == 200, resp.text
    return {s["product_id"]: s for s in resp.json()}


def _settled(admin: CloudMart, wait_for, timeout_s: float = 120.0) -> list[dict]:
    def no_pending():
        orders = _all_pages(admin, "/api/orders")
        return None if any(o["status"] == "pending" for o in orders) else {"orders": orders}

    return wait_for(no_pending, timeout_s, 1.0)["orders"]


def test_chaos_soak_keeps_orders_payments_and_stock_consistent(cloudmart, wait_for, record_property):
    cm = cloudmart.cm
    admin = CloudMart(cloudmart.target, user="admin")
    for name in CHAOS_DEPLOYMENTS:
        cm.scale(name, 2)
    try:
        orders_before = {o["id"] for o in _settled(admin, wait_for, 60)}
        stock_before = _stock(admin)
        box: dict = {}
        load = threading.Thread(target=lambda: box.update(
            result=cm.load(rps=RPS, seconds=SOAK_S, scenario="checkout", seed=2026)))
        start = time.monotonic()
        load.start()
        rng = random.Random(5)
        restarts_before = _restarts(cm)
        kills, refused = [], []
        while time.monotonic() - start < SOAK_S - 1:
            time.sleep(KILL_EVERY_S)
            name = rng.choice(CHAOS_DEPLOYMENTS)
            try:
                kills.append(cm.kill(name)["killed"])
            except TargetError as exc:   # every replica of it is down right now: note it, go on
                refused.append(f"{name}: {exc}")
        load.join(SOAK_S + 60)
        assert not load.is_alive(), "the load generator stops by itself"
        result = box["result"]
        # The chaos happened: at least 8 of the 11 kill attempts hit an order or payment replica,
        # and the supervisor restarted each one it killed.
        assert len(kills) >= MIN_KILLS, (kills, refused)
        assert all(k.split("-")[0] in CHAOS_DEPLOYMENTS for k in kills), kills
        wait_for(lambda: _restarts(cm) - restarts_before >= len(kills), 60, 1.0)
        # A failed checkout is one the gateway had sent to an order replica as it was killed
        # (payment is behind the saga: its kills fail no request). By Little's law an order replica
        # holds (RPS / 2) * W requests at a time, W the mean latency of the run; each order kill
        # may fail three times that, plus 2 sent on a kept-alive connection before the gateway
        # saw the replica die (measured over three soaks: 7 to 15 failures for 6 order kills),
        # and the gateway answers them 502/503/504, never a 4xx/500.
        df = result.requests
        df_failed = df[~df["ok"]]
        assert set(df_failed["status"]) <= {0, 502, 503, 504}, result.summary["status_counts"]
        order_kills = sum(k.startswith("order-") for k in kills)
        in_flight = RPS / 2 * df["latency_ms"].mean() / 1000
        assert len(df_failed) <= order_kills * (3 * in_flight + 2), (order_kills, in_flight, result.summary)
        assert result.summary["error_rate"] <= MAX_ERROR_RATE, result.summary
        accepted = [ref for ref in df.loc[df["status"] == 202, "ref"] if ref]
        assert len(accepted) > SOAK_S * RPS * 0.5, result.summary

        orders = {o["id"]: o for o in _settled(admin, wait_for)}
        states = collections.Counter(orders[oid]["status"] for oid in accepted)
        assert set(states) <= {"confirmed", "cancelled"}, states

        payments = _all_pages(admin, "/api/payments")
        per_order = collections.Counter(p["order_id"] for p in payments)
        assert max(per_order.values()) == 1, "one payment per order"
        by_order = {p["order_id"]: p for p in payments}
        for oid in accepted:
            order, pay = orders[oid], by_order.get(oid)
            if order["status"] == "confirmed":
                assert pay and pay["status"] == "authorized" and pay["amount_cents"] == order["total_cents"]
            else:
                assert not pay or pay["status"] != "authorized", (order, pay)
        authorized_events = collections.defaultdict(set)
        for event in cm.events("payments"):
            if event["type"] == "payments.authorized":
                authorized_events[event["order_id"]].add(event["event_id"])
        assert all(len(ids) == 1 for oid, ids in authorized_events.items() if oid in set(accepted))

        # Inventory hears of an order's end by event, a moment after the order itself changes.
        def stock_settled():
            stock = _stock(admin)
            return stock if all(stock[p]["reserved"] == stock_before[p]["reserved"] for p in stock_before) else None

        stock_after = wait_for(stock_settled, 60, 1.0)
        # Every order made during the soak counts, also one whose 202 was lost with a killed replica.
        new_orders = set(orders) - orders_before
        assert set(accepted) <= new_orders
        confirmed_units = collections.Counter()
        for oid in new_orders:
            if orders[oid]["status"] == "confirmed":
                for line in orders[oid]["items"]:
                    confirmed_units[line["product_id"]] += line["quantity"]
        for pid, before in stock_before.items():
            after = stock_after[pid]
            total = lambda s: s["available"] + s["reserved"] + s["sold"]  # noqa: E731
            assert total(after) == total(before), (pid, before, after)
            assert after["reserved"] == before["reserved"], (pid, before, after)
            assert after["sold"] - before["sold"] == confirmed_units[pid], (pid, before, after)

        report = {"soak_s": SOAK_S, "offered_rps": RPS, "kills": len(kills), "order_kills": order_kills, "refused_kills": len(refused),
                  "failed": len(df_failed), "failed_bound": round(order_kills * (3 * in_flight + 2), 1),
                  "sent": result.summary["sent"],
                  "accepted": len(accepted), "orders_created": len(new_orders), "confirmed": states["confirmed"], "cancelled": states["cancelled"],
                  "gateway_error_rate": result.summary["error_rate"], "status_counts": result.summary["status_counts"],
                  "p50_ms": result.summary["p50_ms"], "p99_ms": result.summary["p99_ms"]}
        print(json.dumps(report))
        record_property("chaos_soak", json.dumps(report))
    finally:
        for name in CHAOS_DEPLOYMENTS:
            cm.scale(name, 1)
