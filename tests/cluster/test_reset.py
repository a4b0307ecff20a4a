"""`cloudmart reset`: a CloudMart whose data, faults, scale, canary and budgets were changed
looks like a fresh one again afterwards, and a second reset changes nothing."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from cluster import reset as resets
from cluster.handle import CloudMart


def _snapshot(cm: CloudMart, admin: CloudMart) -> dict:
    """What a learner can observe of CloudMart's state (no pids, ports or timestamps)."""
    status = cm.status()
    faults = {}
    for dep in status["deployments"].values():
        for rep in dep["replicas"]:
            body = httpx.get(f"http://127.0.0.1:{rep['port']}/admin/fault", headers=admin._admin_headers(),
                             timeout=10).json()
            faults[rep["id"]] = (body.get("latency_ms"), body.get("error_rate"))
    products = cm.get("/api/products", params={"limit": 100}).json()["items"]
    stock = admin.get("/api/inventory").json()
    return {
        "wanted": {n: d["wanted"] for n, d in status["deployments"].items()},
        "ready": {n: d["ready"] for n, d in status["deployments"].items()},
        "weights": {k: v for k, v in (status.get("weights") or {}).items() if v not in (0, 100)},
        "faults": faults,
        "products": sorted((p["id"], p["name"], p["price_cents"]) for p in products),
        "stock": sorted((s["product_id"], s["available"], s.get("reserved", 0)) for s in stock),
        "orders": len(admin.get("/api/orders").json()),
        "events": {s: len(cm.events(s)) for s in ("orders", "inventory", "payments")},
        "budgets": [b["name"] for b in cm.opencost.budgets()],
    }


def test_steps_are_ordered_extensible_and_bad_names_are_refused(monkeypatch):
    names = [n for n, _ in resets.STEPS]
    assert names == ["canary", "data", "objects", "scale", "faults", "budgets"]
    monkeypatch.setattr(resets, "STEPS", list(resets.STEPS))
    resets.reset_step("routes", before="scale")(lambda ctx: [])
    assert [n for n, _ in resets.STEPS].index("routes") == names.index("scale")
    with pytest.raises(ValueError, match="already registered"):
        resets.reset_step("data")(lambda ctx: [])
    with pytest.raises(ValueError, match="valid: canary"):
        resets.reset_step("x", before="nope")(lambda ctx: [])


def test_reset_after_changes_gives_the_fresh_state_and_a_second_reset_changes_nothing(start_cloudmart, tmp_path,
                                                                                       wait_for):
    with start_cloudmart(tmp_path) as running:
        cm, admin = running.cm, CloudMart(running.target, user="admin")
        fresh = _snapshot(cm, admin)
        assert fresh["orders"] == 0 and fresh["products"] and not fresh["budgets"]

        # Change everything a lesson changes: data, faults, scale, canary, budgets.
        pid = fresh["products"][0][0]
        order = cm.post("/api/orders", json={"items": [{"product_id": pid, "quantity": 2}],
                                              "payment": {"card_number": "4242424242424242"}},
                        headers={"Idempotency-Key": str(uuid.uuid4())})
        assert order.status_code == 202
        wait_for(lambda: cm.get(f"/api/orders/{order.json()['id']}").json()["status"] != "pending", 60)
        assert admin.post("/api/products", json={"name": "Demo Lamp", "price_cents": 999}).status_code == 201
        cm.inject("inventory", latency_ms=150, error_rate=0.2)
        cm.scale("order", 2)
        cm.canary("product", 20)
        cm.opencost.create_budget({"name": "demo", "values": {"namespace": ["cloudmart"]}, "interval": "monthly",
                                   "spendLimit": 10})
        dirty = _snapshot(cm, admin)
        for key in ("wanted", "weights", "faults", "products", "stock", "orders", "events", "budgets"):
            assert dirty[key] != fresh[key], f"the test did not change {key}"

        done = running.cli("reset", "--json", timeout=240)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        changed = {s["step"]: s["changed"] for s in report["steps"]}
        assert all(changed[s] for s in ("canary", "data", "scale", "budgets")), changed
        print(f"reset of a changed CloudMart: {report['seconds']} s")   # the figure for the report
        again = resets.reset(running.target)   # before anything reads CloudMart (a read fills caches)
        assert {r.name: r.changed for r in again} == {n: [] for n, _ in resets.STEPS}
        assert _snapshot(cm, admin) == fresh

        # The reset CloudMart still works end to end: a new order is confirmed.
        order = cm.post("/api/orders", json={"items": [{"product_id": pid, "quantity": 1}],
                                              "payment": {"card_number": "4242424242424242"}},
                        headers={"Idempotency-Key": str(uuid.uuid4())})
        assert order.status_code == 202
        final = wait_for(lambda: (o := cm.get(f"/api/orders/{order.json()['id']}").json())["status"] != "pending"
                         and o, 60)
        assert final["status"] == "confirmed"

        with pytest.raises(ValueError, match="valid: canary, data"):
            resets.reset(running.target, steps=["everything"])
        bad = running.cli("reset", "--bogus")
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1
