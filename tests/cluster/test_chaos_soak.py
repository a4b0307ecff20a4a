"""Chaos soak: 60 s of open-loop checkout load while something is killed every 5 s.

Eight of the eleven kills hit an order or payment replica, three hit the infrastructure:
PostgreSQL, NATS and Redis are each `kill -9`ed once under load, and the supervisor starts them
again with no manual step. Afterwards every accepted order is confirmed or cancelled, no order is
charged twice, stock is conserved, at least 6 replica kills really happened, CloudMart was ready
again within a bound after each server kill, and the gateway's error rate during the run is
bounded (and reported, printed as JSON).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import random
import threading
import time

import pytest

from cluster.handle import CloudMart
from cluster.local import TargetError
from services.infra import load_infra, pid_alive

pytestmark = [pytest.mark.live, pytest.mark.slow]

SOAK_S = 60
KILL_EVERY_S = 5
RPS = 10
CHAOS_DEPLOYMENTS = ("order", "payment")   # each runs 2 replicas during the soak
MIN_KILLS = 6                # of the 8 replica kill attempts (one may find every replica down)
#: Kill slot (0-based, one every KILL_EVERY_S) -> the server killed in it instead of a replica.
INFRA_KILLS = {2: "postgres", 5: "nats", 8: "redis"}
#: A server's own start is the machine's business (PostgreSQL's crash recovery took 2 to 14 s on
#: a 2-core machine at load 2 to 22); what CloudMart adds is bounded: noticing the death and
#: starting the server again (the supervisor looks every INFRA_POLL_S = 1 s), then every replica
#: reconnecting and passing its readiness probe. Measured 0.7 to 1.0 s and 0 s (replicas ready
#: again as soon as the server was back; one soak at load 6).
MAX_RESTART_OVERHEAD_S = 5.0
MAX_READY_AFTER_BACK_S = 10.0
#: Requests sent from this long before a server kill until this long after CloudMart was ready
#: again count as that outage's (the load's clock starts a moment after the test's).
OUTAGE_GRACE_S = (1.0, 3.0)
# Measured 2.7 % and 2.4 % (15 and 13 of 548 checkouts, 11 and 12 kills) on a busy 2-core machine; the
# Little's-law bound below is the sharper one, this one catches a gateway that fails wholesale.
MAX_ERROR_RATE = 0.10


def _restarts(cm: CloudMart) -> int:
    """Restarts of every order and payment replica so far (the supervisor counts them)."""
    deps = cm.status()["deployments"]
    return sum(r["restarts"] for name in CHAOS_DEPLOYMENTS for r in deps[name]["replicas"])


def _kill_server(cm: CloudMart, kind: str, timeout_s: float = 60.0) -> dict:
    """SIGKILL one infrastructure server of a ready CloudMart; when it ran again and when every
    replica was ready again (seconds after the kill), and how long the server itself took to start."""
    wait_for_ready(cm, timeout_s)   # a replica killed just before must not count as this outage's
    before = cm.status()["infra"][kind]
    killed_at = time.monotonic()
    os.kill(before["pid"], signal.SIGKILL)
    back_s = None
    while time.monotonic() - killed_at < timeout_s:
        status = cm.target.status()
        info = status["infra"][kind]
        if back_s is None and info["alive"] and info["pid"] != before["pid"]:
            back_s = time.monotonic() - killed_at
            assert info["restarts"] == before["restarts"] + 1, (kind, before, info)
            assert not pid_alive(before["pid"]), f"the dead {kind} was reaped"
        if back_s is not None and status["ready"]:
            start_s = load_infra(cm.target.state_dir).startup_s[kind]   # the restart's own measure
            return {"back_s": round(back_s, 2), "ready_s": round(time.monotonic() - killed_at, 2),
                    "server_start_s": round(start_s, 2)}
        time.sleep(0.1)
    raise AssertionError(f"{kind} not back and ready {timeout_s:.0f} s after its kill: {cm.target.status()['infra']}")


def wait_for_ready(cm: CloudMart, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not cm.target.status()["ready"]:
        assert time.monotonic() < deadline, f"CloudMart not ready within {timeout_s:.0f} s"
        time.sleep(0.1)


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
        outages: dict[str, tuple[float, float]] = {}   # server -> (killed at, ready again at), load clock
        recovery: dict[str, dict] = {}
        for slot in range(SOAK_S // KILL_EVERY_S - 1):   # at 5, 10, ... 55 s
            time.sleep(max(0.0, start + KILL_EVERY_S * (slot + 1) - time.monotonic()))
            if slot in INFRA_KILLS:
                kind = INFRA_KILLS[slot]
                recovery[kind] = _kill_server(cm, kind)
                t_ready = time.monotonic() - start
                outages[kind] = (t_ready - recovery[kind]["ready_s"], t_ready)
            else:
                name = rng.choice(CHAOS_DEPLOYMENTS)
                try:
                    kills.append(cm.kill(name)["killed"])
                except TargetError as exc:   # every replica of it is down right now: note it, go on
                    refused.append(f"{name}: {exc}")
        load.join(SOAK_S + 60)
        assert not load.is_alive(), "the load generator stops by itself"
        result = box["result"]
        # The chaos happened: each server was killed once and CloudMart was ready again with no
        # manual step, within bounds past the server's own start; at least 6 of the 8 replica kill
        # attempts hit an order or payment replica, and the supervisor restarted each one it killed.
        assert set(outages) == set(INFRA_KILLS.values()), outages
        for kind, r in recovery.items():
            assert r["back_s"] - r["server_start_s"] <= MAX_RESTART_OVERHEAD_S, (kind, recovery)
            assert r["ready_s"] - r["back_s"] <= MAX_READY_AFTER_BACK_S, (kind, recovery)
        assert len(kills) >= MIN_KILLS, (kills, refused)
        assert all(k.split("-")[0] in CHAOS_DEPLOYMENTS for k in kills), kills
        wait_for(lambda: _restarts(cm) - restarts_before >= len(kills), 60, 1.0)
        # A failed checkout is one the gateway had sent to an order replica as it was killed
        # (payment is behind the saga: its kills fail no request). By Little's law an order replica
        # holds (RPS / 2) * W requests at a time, W the mean latency of the run; each order kill
        # may fail three times that, plus 2 sent on a kept-alive connection before the gateway
        # saw the replica die (measured over three soaks: 7 to 15 failures for 6 order kills),
        # and the gateway answers them 502/503/504, never a 4xx/500.
        # A server's outage fails what reaches it (its clients answer 503 "database unavailable"
        # and the like, readiness takes the replicas out, the gateway answers 503); outside the
        # outages only the replica kills fail requests. Never a 4xx or a 500.
        df = result.requests
        df_failed = df[~df["ok"]]
        assert set(df_failed["status"]) <= {0, 502, 503, 504}, result.summary["status_counts"]
        in_outage = df["t_s"].apply(lambda t: any(a - OUTAGE_GRACE_S[0] <= t <= b + OUTAGE_GRACE_S[1]
                                                  for a, b in outages.values()))
        outage_failed = {kind: int(((~df["ok"]) & df["t_s"].between(a - OUTAGE_GRACE_S[0], b + OUTAGE_GRACE_S[1])).sum())
                         for kind, (a, b) in outages.items()}
        replica_failed = df_failed[~in_outage[~df["ok"]]]
        order_kills = sum(k.startswith("order-") for k in kills)
        in_flight = RPS / 2 * df.loc[~in_outage, "latency_ms"].mean() / 1000
        outside_error_rate = len(replica_failed) / max(1, int((~in_outage).sum()))
        print(json.dumps({"server_recovery_s": recovery, "failed_in_server_outage": outage_failed,
                          "failed_outside": len(replica_failed), "order_kills": order_kills,
                          "failed_statuses": {int(k): int(v) for k, v in df_failed["status"].value_counts().items()}}))
        assert len(replica_failed) <= order_kills * (3 * in_flight + 2), (order_kills, in_flight, result.summary)
        # Within an outage every request may fail: the bounds there are on its length, above.
        assert outside_error_rate <= MAX_ERROR_RATE, (outside_error_rate, result.summary)
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

        report = {"soak_s": SOAK_S, "offered_rps": RPS, "kills": len(kills), "server_recovery_s": recovery,
                  "failed_in_server_outage": outage_failed, "failed_outside": len(replica_failed), "order_kills": order_kills, "refused_kills": len(refused),
                  "failed": len(df_failed), "failed_bound": round(order_kills * (3 * in_flight + 2), 1),
                  "sent": result.summary["sent"],
                  "accepted": len(accepted), "orders_created": len(new_orders), "confirmed": states["confirmed"], "cancelled": states["cancelled"],
                  "gateway_error_rate": result.summary["error_rate"], "error_rate_outside_outages": round(outside_error_rate, 4), "status_counts": result.summary["status_counts"],
                  "p50_ms": result.summary["p50_ms"], "p99_ms": result.summary["p99_ms"]}
        print(json.dumps(report))
        record_property("chaos_soak", json.dumps(report))
    finally:
        for name in CHAOS_DEPLOYMENTS:
            cm.scale(name, 1)
