"""Benchmark of the local target: start-up time, memory, gateway and mesh latency, checkout rate.

    python tests/benchmarks/local_target.py --json

Starts its own CloudMart in a temporary state folder on free ports (loopback only), measures,
stops it, and prints one JSON object as the last line. Timings are noisy on a shared machine:
they are figures to read, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster.handle import CloudMart  # noqa: E402
import aiohttp  # noqa: E402
import pandas as pd  # noqa: E402

from cluster.load import run_load  # noqa: E402
from cluster.local import LocalTarget  # noqa: E402
from services.infra import free_port  # outside the ephemeral range: no outgoing connection takes it

# Istio's own published sidecar figures (istio.io "Performance and Scalability" pages), for comparison.
ISTIO_PUBLISHED = {
    "istio_1.12_two_sidecars_added_p90_ms": 1.7,
    "istio_1.12_two_sidecars_added_p99_ms": 2.7,
    "istio_1.9_envoy_added_p90_ms": 2.65,
    "istio_1.24_sidecar_vcpu_per_1000_rps": 0.20,
    "istio_1.24_sidecar_memory_mb": 60,
    "conditions": "1000 rps, 1 KB payload, 16 connections, mTLS, telemetry v2; p50 not published",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed_up(target: LocalTarget, port: int, **kw) -> float:
    start = time.perf_counter()
    target.up(port=port, **kw)
    return round(time.perf_counter() - start, 2)


def memory(cm: CloudMart) -> dict:
    df = cm.usage()
    return {"total_rss_mb": round(float(df["rss_mb"].sum()), 1), "total_pss_mb": round(float(df["pss_mb"].sum()), 1),
            "processes": int(df["processes"].sum()),
            "by_kind_pss_mb": {k: round(float(v), 1) for k, v in df.groupby("kind")["pss_mb"].sum().items()}}


def read_latencies(cm: CloudMart, rate_per_s: float, seconds: float, mesh: bool) -> dict:
    """GET one product on every path in turn, at a fixed rate of rounds, and compare.

    Each round sends one request down each path (in a shuffled order, one after the other), so
    every path sees the same moment of a noisy shared machine; the added latency of a path is the
    median over rounds of (path - direct), next to each path's own p50/p90/p99.
    """
    status = cm.status()
    product = status["deployments"]["product"]["replicas"][0]
    paths = {"direct": f"http://127.0.0.1:{product['port']}", "gateway": cm.gateway_url,
             # The same gateway with a bearer token: Envoy's jwt_authn verifies it (RS256) on each request.
             "gateway_jwt": cm.gateway_url}
    headers = {name: {} for name in paths}
    headers["gateway_jwt"] = {"Authorization": f"Bearer {cm.token_for('loadgen')}"}
    if status.get("cluster_ports", {}).get("product"):
        # The same Envoy, its in-cluster listener: one proxy hop, no JWT check, no rate limit.
        paths["proxy_hop"] = f"http://127.0.0.1:{status['cluster_ports']['product']}"
    if mesh:
        order = status["deployments"]["order"]["replicas"][0]
        # Plaintext into order's outbound sidecar -> mTLS -> product's inbound sidecar -> product.
        paths["two_sidecars"] = f"http://127.0.0.1:{order['sidecar_outbound_ports']['product']}"
    headers = {name: headers.get(name, {}) for name in paths}
    product_id = cm.get("/api/products").json()["items"][0]["id"]

    async def measure() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {name: [] for name in paths}
        rng = random.Random(1)
        rounds = int(rate_per_s * seconds)
        async with aiohttp.ClientSession() as session:
            for name, base in paths.items():   # open the keep-alive connections first
                async with session.get(f"{base}/api/products/{product_id}", headers=headers[name]) as resp:
                    await resp.read()
            start = time.perf_counter()
            for i in range(rounds):
                order_ = list(paths.items())
                rng.shuffle(order_)
                for name, base in order_:
                    t0 = time.perf_counter()
                    async with session.get(f"{base}/api/products/{product_id}", headers=headers[name]) as resp:
                        await resp.read()
                        ok = resp.status == 200
                    samples[name].append((time.perf_counter() - t0) * 1000.0 if ok else float("nan"))
                delay = start + (i + 1) / rate_per_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        return samples

    samples = asyncio.run(measure())
    frame = pd.DataFrame(samples)
    out = {}
    for name in paths:
        col = frame[name].dropna()
        out[name] = {"p50_ms": round(float(col.quantile(0.5)), 3), "p90_ms": round(float(col.quantile(0.9)), 3),
                     "p99_ms": round(float(col.quantile(0.99)), 3), "errors": int(frame[name].isna().sum()),
                     "n": int(len(col))}
        if name != "direct":
            out[name]["added_p50_ms_paired"] = round(float((frame[name] - frame["direct"]).median()), 3)
    return out


def added(a: dict, b: dict, key: str = "p50_ms") -> float | None:
    if a.get(key) is None or b.get(key) is None:
        return None
    return round(b[key] - a[key], 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON summary on stdout")
    parser.add_argument("--rps", type=float, default=40.0, help="rounds per second of the latency runs")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each latency or load run")
    parser.add_argument("--checkout-rps", type=float, default=30.0)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="cloudmart-bench-"))
    target = LocalTarget(root / "state")
    port = free_port()
    report: dict = {"rps": args.rps, "seconds": args.seconds}
    try:
        log("cold up (new state folder: database files created)...")
        report["cold_up_s"] = timed_up(target, port)
        cm = CloudMart(target, user=None)
        report["memory"] = memory(cm)
        log("product read latency, direct vs through the gateway...")
        reads = read_latencies(cm, args.rps, args.seconds, mesh=False)
        # gateway = Envoy's edge (no token: jwt_authn passes, per-user bucket, buffer filter) + the
        # hop; gateway_jwt = the same with a token Envoy verifies; proxy_hop = an Envoy hop alone.
        report["read"] = reads
        report["gateway_added_p50_ms"] = reads["gateway"]["added_p50_ms_paired"]
        report["gateway_jwt_added_p50_ms"] = reads["gateway_jwt"]["added_p50_ms_paired"]
        report["proxy_hop_added_p50_ms"] = reads["proxy_hop"]["added_p50_ms_paired"]
        log("checkout throughput...")
        token = cm.token_for("loadgen")
        checkout = run_load(cm.gateway_url, args.checkout_rps, args.seconds, "checkout", token=token, seed=2)
        accepted = int((checkout.requests["status"] == 202).sum())
        report["checkout"] = {"offered_rps": args.checkout_rps, "accepted_per_s": round(accepted / args.seconds, 2),
                              "error_rate": checkout.summary["error_rate"], "p50_ms": checkout.summary["p50_ms"],
                              "p99_ms": checkout.summary["p99_ms"]}
        target.down()
        log("warm up (same state folder)...")
        report["warm_up_s"] = timed_up(target, port)
        target.down()
        log("mesh up and latency...")
        report["mesh_up_s"] = timed_up(target, port, mesh=True)
        cm = CloudMart(target, user=None)
        report["mesh_memory"] = memory(cm)
        mesh_reads = read_latencies(cm, args.rps, args.seconds, mesh=True)
        report["mesh_read"] = mesh_reads
        # Through the gateway with the mesh: the gateway calls the replicas' sidecars over mTLS.
        report["mesh_gateway_added_p50_ms"] = mesh_reads["gateway"]["added_p50_ms_paired"]
        two = mesh_reads["two_sidecars"]["added_p50_ms_paired"]
        report["mesh_two_sidecars_added_p50_ms"] = two
        report["mesh_two_sidecars_added_p90_ms"] = added(mesh_reads["direct"], mesh_reads["two_sidecars"], "p90_ms")
        report["mesh_added_p50_ms_per_hop"] = round(two / 2, 3)
        report["istio_published"] = ISTIO_PUBLISHED
        target.down()
    finally:
        target.down()
        shutil.rmtree(root, ignore_errors=True)
    report["targets"] = {"cold_up_s": 5, "warm_up_s": 5, "total_pss_mb": 1024, "mesh_total_pss_mb": 1600,
                         "gateway_jwt_added_p50_ms": 0.5, "mesh_added_p50_ms_per_hop": 0.5}
    if not args.json:
        log(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
