"""The local OpenCost-compatible server: `/allocation`, OpenCost's Prometheus metrics, budgets.

Runs inside the supervisor (it reads the usage recorder directly), on 127.0.0.1 at a free port
written to `<state>/run/opencost.json`; unauthenticated like OpenCost's own API, loopback only.

    GET  /allocation (= /allocation/compute)   window, aggregate, step, accumulate, includeIdle, shareIdle
    GET  /metrics                              node_*_hourly_cost, container_*_allocation, kubecost_node_is_spot
    POST /model/budget, GET /model/budgets, DELETE /model/deleteBudget?id=...
    GET  /healthz
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from cluster.finops import allocation as alloc
from cluster.finops import budgets as bud
from cluster.finops.pricing import VirtualNode

log = logging.getLogger("cloudmart.finops")

PORT_FILE = "opencost.json"
NODE_FILE = "node.json"
BUDGET_EVAL_S = 5.0
EXPORT_WINDOW_S = 60.0


def metas_from_objects(objects: list[dict]) -> dict[str, alloc.PodMeta]:
    """Namespace and pod template labels of every Deployment in rendered manifests."""
    out = {}
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        meta = obj.get("metadata", {})
        labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}
        out[meta.get("name")] = alloc.PodMeta(meta.get("namespace", "default"), dict(labels))
    return out


def load_node(state_dir: Path) -> VirtualNode:
    """The declared node: `<state>/finops/node.json` when present, else the default general.large."""
    path = state_dir / "finops" / NODE_FILE
    if path.exists():
        return VirtualNode.from_dict(json.loads(path.read_text()))
    return VirtualNode.of()


class FinOps:
    """The allocation, exporter and budget logic over a usage recorder (no HTTP here)."""

    def __init__(self, recorder, metas: dict[str, alloc.PodMeta], node: VirtualNode, budgets: bud.BudgetStore,
                 clock=time.time):
        self.recorder = recorder
        self.metas = metas
        self.node = node
        self.budgets = budgets
        self.clock = clock

    def _rows(self, start: float, now: float) -> list[dict]:
        from cluster.usage import MAX_WINDOW_S

        reach = min(MAX_WINDOW_S, max(1.0, now - start + 3 * self.recorder.interval_s))
        return self.recorder.series(reach, now=now)

    def allocation(self, params: dict) -> dict:
        now = self.clock()
        window = params.get("window")
        start, _ = alloc.parse_window(window, now)
        return alloc.compute(self._rows(start, now), self.node, self.metas, now=now, window=window,
                             aggregate=params.get("aggregate"), step=params.get("step"),
                             accumulate=params.get("accumulate"), include_idle=params.get("includeIdle"),
                             share_idle=params.get("shareIdle"), data_start=self._data_start())

    def _data_start(self) -> float | None:
        firsts = [buf[0].t for buf in self.recorder.buffers.values() if buf]
        return min(firsts) if firsts else None

    def metrics(self) -> str:
        """OpenCost's exporter metric names (docs: "OpenCost Metrics"), in Prometheus text format."""
        n = self.node
        node_labels = (f'node="{n.name}",instance="{n.name}",instance_type="{n.instance_type}",'
                       f'region="{n.region}",provider_id="cloudmart://{n.name}"')
        lines = [
            "# HELP node_cpu_hourly_cost Hourly cost per vCPU on this node",
            "# TYPE node_cpu_hourly_cost gauge", f"node_cpu_hourly_cost{{{node_labels}}} {n.cpu_usd_per_core_h!r}",
            "# HELP node_ram_hourly_cost Hourly cost per GiB of memory on this node",
            "# TYPE node_ram_hourly_cost gauge", f"node_ram_hourly_cost{{{node_labels}}} {n.ram_usd_per_gib_h!r}",
            "# HELP node_gpu_hourly_cost Hourly cost per GPU on this node",
            "# TYPE node_gpu_hourly_cost gauge", f"node_gpu_hourly_cost{{{node_labels}}} 0.0",
            "# HELP node_total_hourly_cost Total node cost per hour",
            "# TYPE node_total_hourly_cost gauge", f"node_total_hourly_cost{{{node_labels}}} {n.usd_per_h!r}",
            "# HELP node_gpu_count Number of GPUs available on node",
            "# TYPE node_gpu_count gauge", f"node_gpu_count{{{node_labels}}} 0.0",
            "# HELP kubecost_node_is_spot Cloud provider info about node preemptibility",
            "# TYPE kubecost_node_is_spot gauge",
            f"kubecost_node_is_spot{{{node_labels}}} {1.0 if n.purchase == 'spot' else 0.0}",
        ]
        cpu, mem = [], []
        now = self.clock()
        by = {}
        for row in self.recorder.series(EXPORT_WINDOW_S, now=now):
            by.setdefault((row["replica"], row["container"], row["deployment"]), []).append(row)
        for (pod, container, dep), rows in sorted(by.items()):
            meta = self.metas.get(dep, alloc.PodMeta())
            used = [r["cpu_cores"] for r in rows if r["cpu_cores"] is not None]
            use_cpu = sum(used) / len(used) if used else 0.0
            use_mem = sum(r["pss_bytes"] for r in rows) / len(rows)
            req_cpu = rows[-1]["cpu_request_cores"] or 0.0
            req_mem = rows[-1]["memory_request_bytes"] or 0.0
            labels = (f'container="{container}",pod="{pod}",namespace="{meta.namespace}",node="{n.name}",'
                      f'instance="{n.name}"')
            cpu.append(f"container_cpu_allocation{{{labels}}} {max(req_cpu, use_cpu)!r}")
            mem.append(f"container_memory_allocation_bytes{{{labels}}} {max(req_mem, use_mem)!r}")
        lines += ["# HELP container_cpu_allocation Average number of CPUs requested/used over last 1m",
                  "# TYPE container_cpu_allocation gauge", *cpu,
                  "# HELP container_memory_allocation_bytes Average bytes of RAM requested/used over last 1m",
                  "# TYPE container_memory_allocation_bytes gauge", *mem]
        return "\n".join(lines) + "\n"

    def budget_status(self, budget: dict) -> dict:
        now = self.clock()
        start, end = bud.budget_window(budget, now)
        spend = 0.0
        from cluster.usage import MAX_WINDOW_S

        span = min(now - start, MAX_WINDOW_S)
        if span > 0:
            result = alloc.compute(self._rows(now - span, now), self.node, self.metas, now=now,
                                   window=f"{now - span:.3f},{now:.3f}", accumulate=True,
                                   data_start=self._data_start())
            spend = sum(line["totalCost"] for line in result["data"][0].values()
                        if bud.matches(budget, line["properties"]))
        return {**budget, "window": {"start": alloc._iso(start), "end": alloc._iso(end)}, "currentSpend": spend,
                "_window_start": start}

    async def check_budgets(self, session: aiohttp.ClientSession) -> list[dict]:
        """Fire every due action (a JSON POST to its webhooks); returns what was sent."""
        sent = []
        for budget in list(self.budgets.budgets.values()):
            status = self.budget_status(budget)
            for action in bud.due_actions(budget, status["currentSpend"], status["_window_start"]):
                payload = {"budget": budget["name"], "id": budget["id"], "percentage": action["percentage"],
                           "spendLimit": budget["spendLimit"], "currentSpend": status["currentSpend"],
                           "window": status["window"], "values": budget["values"]}
                for url in action["webhooks"]:
                    try:
                        async with session.post(url, json=payload) as resp:
                            payload.setdefault("responses", []).append(resp.status)
                    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                        log.warning("budget %s: webhook %s: %s", budget["name"], url, exc)
                fired = dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                self.budgets.mark_fired(budget["id"], action["percentage"], fired)
                sent.append(payload)
        return sent

    # ----- HTTP ----------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()

        def bad(exc: Exception) -> web.Response:
            return web.json_response({"code": 400, "message": str(exc)}, status=400)

        async def allocation(request):
            try:
                return web.json_response(self.allocation(dict(request.query)))
            except ValueError as exc:
                return bad(exc)

        async def metrics(request):
            return web.Response(text=self.metrics(), content_type="text/plain", charset="utf-8")

        async def post_budget(request):
            try:
                body = await request.json()
            except ValueError:
                return bad(ValueError("budget: the body is not JSON"))
            try:
                budget = self.budgets.put(body)
            except ValueError as exc:
                return bad(exc)
            status = self.budget_status(budget)
            status.pop("_window_start")
            return web.json_response({"code": 200, "data": [status]})

        async def get_budgets(request):
            out = []
            for b in self.budgets.budgets.values():
                status = self.budget_status(b)
                status.pop("_window_start")
                out.append(status)
            return web.json_response({"code": 200, "data": out})

        async def delete_budget(request):
            try:
                self.budgets.delete(request.query.get("id", ""))
            except ValueError as exc:
                return bad(exc)
            return web.json_response({"code": 200, "data": []})

        async def healthz(request):
            return web.json_response({"ok": True, "node": self.node.describe()})

        app.router.add_get("/allocation", allocation)
        app.router.add_get("/allocation/compute", allocation)
        app.router.add_get("/metrics", metrics)
        app.router.add_post("/model/budget", post_budget)
        app.router.add_get("/model/budgets", get_budgets)
        app.router.add_delete("/model/deleteBudget", delete_budget)
        app.router.add_get("/healthz", healthz)
        return app


async def serve(sup) -> None:
    """The supervisor's background task: serve the FinOps API until cancelled; check budgets."""
    from services.infra import free_port

    state_dir = Path(sup.state_dir)
    finops = FinOps(sup.usage, metas_from_objects(getattr(sup.usage, "manifest_objects", [])),
                    load_node(state_dir), bud.BudgetStore(state_dir / "finops" / "budgets.json"))
    sup.finops = finops
    runner = web.AppRunner(finops.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    port_file = state_dir / "run" / PORT_FILE
    port_file.parent.mkdir(parents=True, exist_ok=True)
    port_file.write_text(json.dumps({"port": port, "pid": os.getpid()}))
    log.info("OpenCost-compatible API on 127.0.0.1:%d (%s)", port, finops.node.describe())
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            while True:
                await asyncio.sleep(BUDGET_EVAL_S)
                try:
                    await finops.check_budgets(session)
                except Exception:   # keep serving
                    log.exception("budget check failed")
    finally:
        port_file.unlink(missing_ok=True)
        await runner.cleanup()
