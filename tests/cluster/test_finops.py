"""The OpenCost-compatible allocation against hand calculations (max(request, usage), idle,
shareIdle, steps, aggregates, capacity), reconciliation to the cent, budgets after Kubecost's API,
the exporter's metric names, bad input; and the live API over a running CloudMart."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from cluster.finops import WebhookReceiver, to_cents
from cluster.finops import allocation as alloc
from cluster.finops import budgets as bud
from cluster.finops.pricing import VirtualNode
from cluster.finops.server import FinOps

GIB = 2**30
NOW = 1_800_000_000.0          # a fixed "now" (2027-01-15)
NODE = VirtualNode(vcpu=2, memory_gib=8, usd_per_h=0.096)
METAS = {"a": alloc.PodMeta("shop", {"team": "x", "app.kubernetes.io/name": "a"}), "b": alloc.PodMeta("shop", {})}


def rows(start: float = NOW - 3600, end: float = NOW, step: float = 10.0) -> list[dict]:
    """a-0: request 0.5 cores / 1 GiB, uses 0.2 cores the first half hour and 0.8 the second,
    0.5 GiB; b-0: no requests, 0.1 cores and 2 GiB throughout."""
    out = []
    t = start
    while t <= end + 1e-9:
        first_half = t <= start + 1800
        out.append({"t": t, "replica": "a-0", "deployment": "a", "service": "a", "container": "app", "pid": 1,
                    "cpu_cores": 0.2 if first_half else 0.8, "pss_bytes": 0.5 * GIB,
                    "cpu_request_cores": 0.5, "memory_request_bytes": 1.0 * GIB})
        out.append({"t": t, "replica": "b-0", "deployment": "b", "service": "b", "container": "app", "pid": 2,
                    "cpu_cores": 0.1, "pss_bytes": 2.0 * GIB, "cpu_request_cores": None, "memory_request_bytes": None})
        t += step
    return out


def run(**kw):
    """compute() with the API's parameter names (includeIdle, shareIdle)."""
    kw.setdefault("window", "1h")
    for api, py in (("includeIdle", "include_idle"), ("shareIdle", "share_idle")):
        if api in kw:
            kw[py] = kw.pop(api)
    return alloc.compute(rows(), NODE, METAS, now=NOW, data_start=NOW - 3600, **kw)


def test_node_prices_split_the_node_cost_exactly():
    assert NODE.vcpu * NODE.cpu_usd_per_core_h + NODE.memory_gib * NODE.ram_usd_per_gib_h == pytest.approx(0.096)
    with pytest.raises(ValueError, match="usd_per_h"):
        VirtualNode(usd_per_h=-0.1)
    with pytest.raises(ValueError, match="instance_type"):
        VirtualNode.of("nope")
    assert "general.large" in VirtualNode.of().describe()


def test_max_of_request_and_usage_by_hand():
    pc, pr = NODE.cpu_usd_per_core_h, NODE.ram_usd_per_gib_h
    out = run(aggregate="controller", includeIdle=None)["data"][0]
    a, b = out["deployment:a"], out["deployment:b"]
    # a: max(0.5, 0.2) for 30 min + max(0.5, 0.8) for 30 min = 0.65 core-hours; RAM max(1, 0.5) = 1 GiB-h
    assert a["cpuCoreHours"] == pytest.approx(0.65, rel=1e-3)
    assert a["cpuCost"] == pytest.approx(0.65 * pc, rel=1e-3)
    assert a["ramCost"] == pytest.approx(1.0 * pr, rel=1e-3)
    assert a["cpuCoreRequestAverage"] == pytest.approx(0.5, rel=1e-3)
    assert a["cpuEfficiency"] == pytest.approx(0.5 / 0.5, rel=1e-2)     # mean usage 0.5 over request 0.5
    # b: no request, so its usage: 0.1 core-hours and 2 GiB-hours
    assert b["cpuCost"] == pytest.approx(0.1 * pc, rel=1e-3) and b["ramCost"] == pytest.approx(2 * pr, rel=1e-3)
    assert a["properties"]["namespace"] == "shop" and a["properties"]["labels"]["team"] == "x"


def test_idle_is_the_rest_of_the_bill_and_reconciles_to_the_cent():
    pc, pr = NODE.cpu_usd_per_core_h, NODE.ram_usd_per_gib_h
    answer = run(aggregate="namespace", includeIdle="true")
    lines, bill = answer["data"][0], answer["bills"][0]
    assert bill["totalCost"] == pytest.approx(0.096)
    assert lines["__idle__"]["cpuCost"] == pytest.approx(2 * pc - 0.75 * pc, rel=1e-3)
    assert lines["__idle__"]["ramCost"] == pytest.approx(8 * pr - 3 * pr, rel=1e-3)
    assert sum(v["totalCost"] for v in lines.values()) == pytest.approx(bill["totalCost"], abs=1e-12)
    cents = to_cents(lines, bill["totalCost"])
    assert sum(cents.values()) == round(bill["totalCost"] * 100)
    with pytest.raises(ValueError, match="includeIdle"):
        to_cents(run(aggregate="namespace")["data"][0], bill["totalCost"])


def test_share_idle_is_weighted_per_resource():
    base = run(aggregate="controller", includeIdle=True)["data"][0]
    shared = run(aggregate="controller", shareIdle=True)["data"][0]
    assert "__idle__" not in shared
    idle = base["__idle__"]
    a, b = base["deployment:a"], base["deployment:b"]
    share_cpu = a["cpuCost"] / (a["cpuCost"] + b["cpuCost"])
    share_ram = a["ramCost"] / (a["ramCost"] + b["ramCost"])
    assert shared["deployment:a"]["cpuCost"] == pytest.approx(a["cpuCost"] + idle["cpuCost"] * share_cpu)
    assert shared["deployment:a"]["ramCost"] == pytest.approx(a["ramCost"] + idle["ramCost"] * share_ram)
    assert sum(v["totalCost"] for v in shared.values()) == pytest.approx(0.096, abs=1e-12)


def test_steps_and_accumulate():
    sets = run(aggregate="controller", step="30m")["data"]
    assert len(sets) == 2
    assert sets[0]["deployment:a"]["cpuCoreHours"] == pytest.approx(0.25, rel=2e-2)
    assert sets[1]["deployment:a"]["cpuCoreHours"] == pytest.approx(0.40, rel=2e-2)
    one = run(aggregate="controller", step="30m", accumulate="true")["data"]
    assert len(one) == 1
    assert one[0]["deployment:a"]["cpuCoreHours"] == pytest.approx(
        sets[0]["deployment:a"]["cpuCoreHours"] + sets[1]["deployment:a"]["cpuCoreHours"])


def test_label_and_multi_aggregates():
    by_team = run(aggregate="label:team")["data"][0]
    assert set(by_team) == {"x", "__unallocated__"}
    by_name = run(aggregate="label:app_kubernetes_io_name")["data"][0]     # OpenCost's sanitised key works
    assert set(by_name) == {"a", "__unallocated__"}
    multi = run(aggregate="namespace,label:team")["data"][0]
    assert set(multi) == {"shop/x", "shop/__unallocated__"}
    assert set(run()["data"][0]) == {"cloudmart-local/cloudmart-local/shop/a-0/app",
                                     "cloudmart-local/cloudmart-local/shop/b-0/app"}


def test_charges_over_capacity_are_scaled_and_idle_never_negative():
    small = VirtualNode(vcpu=0.5, memory_gib=8, usd_per_h=0.05)
    answer = alloc.compute(rows(), small, METAS, now=NOW, window="1h", include_idle=True, data_start=NOW - 3600)
    lines = answer["data"][0]
    assert lines["__idle__"]["cpuCost"] == pytest.approx(0.0, abs=1e-12)
    assert sum(v["cpuCost"] for v in lines.values()) == pytest.approx(0.5 * small.cpu_usd_per_core_h)


def test_the_bill_starts_with_the_data():
    """CloudMart up for 30 min of a 1 h window: the node is billed for 30 min."""
    answer = alloc.compute(rows(NOW - 1800), NODE, METAS, now=NOW, window="1h", include_idle=True)
    assert answer["bills"][0]["minutes"] == pytest.approx(30.0)
    assert answer["bills"][0]["totalCost"] == pytest.approx(0.048)


@pytest.mark.parametrize("kw, match", [
    ({"aggregate": "team"}, "aggregate: got 'team'"),
    ({"aggregate": "label:"}, "aggregate"),
    ({"window": "2099-01-01T00:00:00Z,2099-01-02T00:00:00Z"}, "in the future"),
    ({"window": f"{NOW - 60},{NOW + 3600}"}, "in the future"),
    ({"window": "soon"}, "window: got 'soon'"),
    ({"window": f"{NOW},{NOW - 60}"}, "start before the end"),
    ({"window": ""}, "window: missing"),
    ({"step": "0m"}, "step"),
    ({"step": "1s", "window": "1h"}, "at most 1000"),
    ({"includeIdle": "maybe"}, "includeIdle"),
])
def test_bad_queries_are_clear_errors(kw, match):
    with pytest.raises(alloc.AllocationError, match=match):
        run(**kw)


def test_budget_fields_and_windows():
    good = {"name": "shop", "values": {"namespace": ["shop"]}, "interval": "weekly", "intervalDay": 3,
            "spendLimit": 100, "actions": [{"percentage": 80, "webhooks": ["http://127.0.0.1:9/hook"]}]}
    b = bud.validate(good)
    assert b["id"] and b["actions"][0]["lastFired"] == ""
    for change, match in (({"values": {}}, "no filter"), ({"values": {"namespace": []}}, "no filter"),
                          ({"values": {"team": ["x"]}}, "values.team"), ({"interval": "daily"}, "interval"),
                          ({"spendLimit": -5}, "spendLimit"), ({"intervalDay": 9}, "intervalDay"),
                          ({"actions": [{"percentage": 80, "webhooks": ["http://example.com/x"]}]}, "webhooks"),
                          ({"values": {"label": ["team"]}}, "key:value")):
        with pytest.raises(bud.BudgetError, match=match):
            bud.validate({**good, **change})
    # 2027-01-15 is a Friday; a weekly budget resetting on Wednesdays (3) began on the 13th
    start, end = bud.budget_window(b, NOW)
    assert dt.datetime.fromtimestamp(start, dt.timezone.utc).date() == dt.date(2027, 1, 13)
    assert end - start == 7 * 86400
    monthly = bud.validate({**good, "interval": "monthly", "intervalDay": 20})
    start, end = bud.budget_window(monthly, NOW)
    assert dt.datetime.fromtimestamp(start, dt.timezone.utc).date() == dt.date(2026, 12, 20)
    assert dt.datetime.fromtimestamp(end, dt.timezone.utc).date() == dt.date(2027, 1, 20)
    assert bud.due_actions(b, 79.9, start) == [] and len(bud.due_actions(b, 80.0, start)) == 1


class FakeRecorder:
    interval_s = 10.0

    def __init__(self, data):
        self.data = data
        self.buffers = {("a-0", "app"): [type("S", (), {"t": NOW - 3600})()]}

    def series(self, window_s, now=None):
        return [r for r in self.data if r["t"] >= now - window_s]


def test_budget_action_fires_once_to_the_webhook(tmp_path):
    import asyncio

    import aiohttp

    fin = FinOps(FakeRecorder(rows()), METAS, NODE, bud.BudgetStore(tmp_path / "b.json"), clock=lambda: NOW)
    with WebhookReceiver() as hook:
        b = fin.budgets.put({"name": "team-x", "values": {"label": ["team:x"]}, "interval": "monthly",
                             "intervalDay": 1, "spendLimit": 0.01,
                             "actions": [{"percentage": 50, "webhooks": [hook.url]},
                                         {"percentage": 1000, "webhooks": [hook.url]}]})
        status = fin.budget_status(b)
        a_cost = alloc.compute(rows(), NODE, METAS, now=NOW, window="1h", aggregate="label:team",
                               data_start=NOW - 3600)["data"][0]["x"]["totalCost"]
        assert status["currentSpend"] == pytest.approx(a_cost)

        async def twice():
            async with aiohttp.ClientSession() as s:
                return await fin.check_budgets(s), await fin.check_budgets(s)

        first, second = asyncio.run(twice())
        assert [p["percentage"] for p in first] == [50.0] and second == []
        got = hook.wait_for(1)
        assert got[0]["body"]["budget"] == "team-x" and got[0]["body"]["currentSpend"] == pytest.approx(a_cost)
    reloaded = bud.BudgetStore(tmp_path / "b.json")
    assert reloaded.budgets[b["id"]]["actions"][0]["lastFired"]


def test_exporter_uses_opencost_metric_names(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    fin = FinOps(FakeRecorder(rows()), METAS, NODE, bud.BudgetStore(tmp_path / "b.json"), clock=lambda: NOW)
    families = {f.name: f for f in text_string_to_metric_families(fin.metrics())}
    for name in ("node_cpu_hourly_cost", "node_ram_hourly_cost", "node_total_hourly_cost", "node_gpu_hourly_cost",
                 "kubecost_node_is_spot", "container_cpu_allocation", "container_memory_allocation_bytes"):
        assert name in families, name
    cpu = {s.labels["pod"]: s.value for s in families["container_cpu_allocation"].samples}
    assert cpu["a-0"] == pytest.approx(0.8) and cpu["b-0"] == pytest.approx(0.1)   # max(request, last-minute usage)
    assert families["node_total_hourly_cost"].samples[0].value == pytest.approx(0.096)


def test_live_allocation_reconciles_to_the_bill(cloudmart, wait_for):
    """Measured usage of the running CloudMart: by controller with idle, the lines add up to the
    declared node's bill for the window, in cents exactly; bad input is a 400 with the reason."""
    cm = cloudmart.cm
    oc = cm.opencost
    wait_for(lambda: len(cm.usage(window_s=10)) > 10, timeout_s=20)
    cm.load(20, 3, "read", seed=4)
    answer = oc.allocation("2m", aggregate="controller", includeIdle=True)
    lines, bill = answer["data"][0], answer["bills"][0]
    assert "deployment:product" in lines and "__idle__" in lines
    assert bill["totalCost"] > 0
    assert sum(v["totalCost"] for v in lines.values()) == pytest.approx(bill["totalCost"], rel=1e-9)
    # averages are over the set's billed time; a pod ran for `minutes` of it at its 50 m request
    # (per pod: other tests may have run a second product replica in the window)
    pods = oc.allocation("2m", aggregate="pod")["data"][0]
    product = pods["product-0"]
    assert product["cpuCoreRequestAverage"] * bill["minutes"] / product["minutes"] == pytest.approx(0.05, rel=0.02)
    show = oc.showback("2m", aggregate="namespace")
    assert show.cents.sum() == show.attrs["bill_cents"]
    with pytest.raises(ValueError, match="aggregate"):
        oc.allocation("1h", aggregate="team")
    future = dt.datetime.fromtimestamp(time.time() + 3600, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(ValueError, match="future"):
        oc.allocation(f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')},{future}")
    assert "container_cpu_allocation{" in oc.metrics()
    with pytest.raises(ValueError, match="no filter"):
        oc.create_budget({"name": "b", "values": {}, "interval": "weekly", "spendLimit": 1})
