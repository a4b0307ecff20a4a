"""Benchmark: does the calibrated simulator predict the live system? (the product read path)

    python tests/benchmarks/sim_vs_live.py --json [--plot sim_vs_live.png]

Starts its own CloudMart in a temporary state folder on a free port (loopback only), then:

1. **calibrates** at light load: the product service's server-side duration histogram (mean and
   spread, `sim.calibrate.service_times`), CPU-seconds per request of product, the gateway (and
   the auth service when the gateway asks it) and of this load generator itself, and the
   gateway's added latency from paired direct/gateway reads;
2. **measures capacity**: a closed loop of 32 users for a few seconds, the throughput it reaches;
3. at 30 %, 60 % and 85 % of capacity runs live open-loop load (>= `--requests` requests per point)
   and the calibrated model — client -> gateway -> product on `sim.SharedCPU(cores=<cpu count>)`,
   every process sharing the machine's cores less what other programs used during calibration —
   and prints predicted and measured p50/p95/p99
   with intervals and their relative errors, against the goal (p50 within 15 %, p99 within 25 % at
   30 % and 60 %; 85 % reported).

The last line of stdout is one JSON object. Timings are of the machine it runs on; run it three
times and compare the spread. It stops its CloudMart and leaves no process behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402

import sim  # noqa: E402
from cluster.handle import CloudMart  # noqa: E402
from cluster.load import run_load  # noqa: E402
from cluster.local import LocalTarget  # noqa: E402
from services.infra import free_port  # noqa: E402
from sim import calibrate  # noqa: E402
from sim.results import percentile_estimate  # noqa: E402

GOAL = {"p50": 0.15, "p99": 0.25}
ROUTE = ("product", "/api/products/{product_id}", "GET")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def paired_reads(cm: CloudMart, n: int) -> tuple[list[float], list[float]]:
    """The same product read direct to a replica and through the gateway, alternately, n times."""
    product = cm.status()["deployments"]["product"]["replicas"][0]
    pid = cm.get("/api/products").json()["items"][0]["id"]
    direct_url = f"http://127.0.0.1:{product['port']}/api/products/{pid}"
    via_url = f"{cm.gateway_url}/api/products/{pid}"
    headers = {"Authorization": f"Bearer {cm.token_for('loadgen')}"}

    async def go():
        d, v = [], []
        async with aiohttp.ClientSession(headers=headers) as s:
            for url in (direct_url, via_url):
                async with s.get(url) as r:
                    await r.read()
            for i in range(n):
                for url, out in ((direct_url, d), (via_url, v)) if i % 2 else ((via_url, v), (direct_url, d)):
                    t0 = time.perf_counter()
                    async with s.get(url) as r:
                        await r.read()
                        if r.status == 200:
                            out.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.01)
        return d, v
    return asyncio.run(go())


def cpu_by_kind(cm: CloudMart) -> dict[str, float]:
    df = cm.usage()
    out = {"product": float(df[(df["kind"] == "replica") & df["name"].str.startswith("product")]["cpu_s"].sum()),
           "auth": float(df[(df["kind"] == "replica") & df["name"].str.startswith("auth")]["cpu_s"].sum()),
           "gateway": float(df[df["kind"] == "gateway"]["cpu_s"].sum())}
    return out


def machine_busy_cores() -> tuple[float, float]:
    """(busy CPU-seconds of the whole machine so far, wall time) from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), time.monotonic()


def calibrate_read_path(cm: CloudMart, token: str, seconds: float) -> dict:
    """Everything the model needs, measured at light load (about 20 requests a second), and the
    CPU the rest of the machine used meanwhile (other programs compete for the same cores)."""
    before_m, before_cpu = cm.metrics(), cpu_by_kind(cm)
    everyone0 = cm.usage()["cpu_s"].sum()
    busy0, wall0 = machine_busy_cores()
    own0 = time.process_time()
    light = run_load(cm.gateway_url, 20, seconds, "read", token=token, seed=1)
    own_cpu = time.process_time() - own0
    busy1, wall1 = machine_busy_cores()
    everyone1 = cm.usage()["cpu_s"].sum()
    after_m, after_cpu = cm.metrics(), cpu_by_kind(cm)
    background = max(0.0, ((busy1 - busy0) - (everyone1 - everyone0) - own_cpu) / (wall1 - wall0))
    n = int(light.requests["ok"].sum())
    fit = calibrate.service_times(before_m, after_m, min_count=50)[ROUTE]
    per_req = {k: (after_cpu[k] - before_cpu[k]) / n for k in after_cpu}
    direct, via = paired_reads(cm, 300)
    hop = calibrate.hop_delay_ms(direct, via)
    return {"requests": n, "product_mean_ms": fit.mean_s * 1000, "product_cv": fit.cv,
            "product_cpu_ms": per_req["product"] * 1000, "gateway_cpu_ms": (per_req["gateway"] + per_req["auth"]) * 1000,
            "client_cpu_ms": own_cpu / max(n, 1) * 1000, "gateway_added_ms": hop.value,
            "background_cores": background,
            "gateway_added_interval_ms": [hop.low, hop.high], "_fit": fit}


def model(cal: dict, cores: int) -> sim.CallGraph:
    g = nx.DiGraph()
    client_s = max(cal["client_cpu_ms"], 1e-3) / 1000
    g.add_node("client", service_time=sim.Deterministic(client_s), servers=100_000)
    gw_total = max(cal["gateway_added_ms"], cal["gateway_cpu_ms"], 1e-3) / 1000
    g.add_node("gateway", service_time=sim.Deterministic(gw_total), servers=100_000, process_cores=cores,
               cpu_fraction=min(1.0, cal["gateway_cpu_ms"] / 1000 / gw_total))
    prod = cal["_fit"].distribution
    g.add_node("product", service_time=prod, servers=100_000,
               cpu_fraction=min(1.0, cal["product_cpu_ms"] / cal["product_mean_ms"]))
    g.add_edge("client", "gateway")
    g.add_edge("gateway", "product")
    # Cores the rest of the machine kept busy are not CloudMart's to share.
    return sim.CallGraph(g, cpu=sim.SharedCPU(cores=max(0.25, cores - cal["background_cores"])))


def capacity(cm: CloudMart, token: str, seconds: float) -> float:
    closed = run_load(cm.gateway_url, None, seconds, "read", token=token, concurrency=32, seed=2)
    return float(closed.requests["ok"].sum() / seconds)


def point(cm: CloudMart, token: str, cg: sim.CallGraph, rps: float, requests: int, seed: int) -> dict:
    seconds = max(requests / rps, 5.0)
    live = run_load(cm.gateway_url, rps, seconds, "read", token=token, seed=seed)
    ok = live.requests[live.requests["ok"]]["latency_ms"].to_numpy()
    predicted = sim.run(cg, seed=seed, rate_per_s=rps, n_requests=max(requests, 5000))
    out = {"rps": round(rps, 1), "live_requests": int(ok.size), "live_errors": int((~live.requests["ok"]).sum())}
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        m = percentile_estimate(ok, q)
        p = getattr(predicted, f"{name}_latency_ms")
        out[name] = {"measured_ms": [round(m.value, 3), round(m.low, 3), round(m.high, 3)],
                     "predicted_ms": [round(p.value, 3), round(p.low, 3), round(p.high, 3)],
                     "relative_error": round((p.value - m.value) / m.value, 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON summary on stdout")
    parser.add_argument("--requests", type=int, default=2000, help="live requests per load point (>= 200)")
    parser.add_argument("--calibrate-seconds", type=float, default=15.0)
    parser.add_argument("--plot", type=Path, default=None, help="save predicted vs measured to this PNG")
    args = parser.parse_args(argv)
    if args.requests < 200:
        parser.error(f"--requests {args.requests}: must be >= 200 (percentiles need them)")
    cores = os.cpu_count() or 1
    # A SIGTERM (timeout, CI cancel) unwinds through `finally`, so CloudMart is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="cloudmart-simlive-"))
    target = LocalTarget(root / "state")
    report: dict = {"cores": cores, "goal": GOAL}
    try:
        log("up...")
        target.up(port=free_port())
        cm = CloudMart(target, user=None)
        token = cm.token_for("loadgen")
        run_load(cm.gateway_url, 20, 3, "read", token=token, seed=0)     # warm caches and connections
        log("calibrating at light load...")
        cal = calibrate_read_path(cm, token, args.calibrate_seconds)
        report["calibration"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in cal.items()
                                 if not k.startswith("_")}
        log("capacity (closed loop, 32 users)...")
        cap = capacity(cm, token, 8.0)
        report["capacity_rps"] = round(cap, 1)
        cg = model(cal, cores)
        report["points"] = {}
        for i, frac in enumerate((0.3, 0.6, 0.85)):
            log(f"{int(frac * 100)} % of capacity...")
            report["points"][f"{int(frac * 100)}%"] = point(cm, token, cg, frac * cap, args.requests, seed=10 + i)
        report["within_goal"] = {
            k: {q: abs(v[q]["relative_error"]) <= GOAL[q] for q in GOAL}
            for k, v in report["points"].items() if k != "85%"}
    finally:
        target.down()
        shutil.rmtree(root, ignore_errors=True)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for q, marker in (("p50", "o"), ("p95", "s"), ("p99", "^")):
            xs = np.arange(3)
            for kind, dx, face in (("measured_ms", -0.08, "none"), ("predicted_ms", 0.08, None)):
                vals = [report["points"][k][q][kind] for k in report["points"]]
                ax.errorbar(xs + dx, [v[0] for v in vals], yerr=[[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]],
                            fmt=marker, mfc=face, label=f"{q} {kind.split('_')[0]}")
        ax.set_xticks(range(3), list(report["points"]))
        ax.set_xlabel(f"load (capacity {report['capacity_rps']} req/s)")
        ax.set_ylabel("latency (ms)")
        worst = max(abs(report["points"][k][q]["relative_error"]) for k in ("30%", "60%") for q in GOAL)
        ax.set_title(f"read path: calibrated sim vs live, worst error at 30/60 % = {worst:.0%}")
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    if not args.json:
        log(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
