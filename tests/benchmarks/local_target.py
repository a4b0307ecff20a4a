"""Benchmark of the local target: start-up time, memory, gateway and mesh latency, checkout rate.

    python tests/benchmarks/local_target.py --json

Starts its own CloudMart in a temporary state folder on free ports (loopback only), measures,
stops it, and prints one JSON object as the last line. Timings are noisy on a shared machine:
they are figures to read, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster.handle import CloudMart  # noqa: E402
from cluster.load import run_load, run_load_async  # noqa: E402
from cluster.local import LocalTarget  # noqa: E402

# Istio's own published sidecar figures (istio.io "Performance and Scalability" pages), for comparison.
ISTIO_PUBLISHED = {
    "istio_1.12_two_sidecars_added_p90_ms": 1.7,
    "istio_1.12_two_sidecars_added_p99_ms": 2.7,
    "istio_1.9_envoy_added_p90_ms": 2.65,
    "istio_1.24_sidecar_vcpu_per_1000_rps": 0.20,
    "istio_1.24_sidecar_memory_mb": 60,
    "conditions": "1000 rps, 1 KB payload, 16 connections, mTLS, telemetry v2; p50 not published",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def _summary(result) -> dict:
    s = result.summary
    lat = result.requests.loc[result.requests["ok"], "latency_ms"]
    return {"p50_ms": s["p50_ms"], "p90_ms": round(float(lat.quantile(0.9)), 3) if len(lat) else None,
            "p99_ms": s["p99_ms"], "error_rate": s["error_rate"], "sent": s["sent"]}


def read_latencies(cm: CloudMart, rps: float, seconds: float, mesh: bool) -> dict:
    """Product reads on every path at once (each at `rps`), so that all see the same machine noise."""
    status = cm.status()
    product = status["deployments"]["product"]["replicas"][0]
    paths = {"direct": f"http://127.0.0.1:{product['port']}", "gateway": cm.gateway_url}
    if status.get("cluster_ports", {}).get("product"):
        # The same Caddy, its in-cluster listener: one proxy hop, no auth check.
        paths["proxy_hop"] = f"http://127.0.0.1:{status['cluster_ports']['product']}"
    if mesh:
        order = status["deployments"]["order"]["replicas"][0]
        # Plaintext into order's outbound sidecar -> mTLS -> product's inbound sidecar -> product.
        paths["two_sidecars"] = f"http://127.0.0.1:{order['sidecar_outbound_ports']['product']}"

    async def together():
        runs = [run_load_async(url, rps, seconds, "read", seed=i) for i, url in enumerate(paths.values())]
        return await asyncio.gather(*runs)

    results = asyncio.run(together())
    return {name: _summary(result) for name, result in zip(paths, results)}


def added(a: dict, b: dict, key: str = "p50_ms") -> float | None:
    if a.get(key) is None or b.get(key) is None:
        return None
    return round(b[key] - a[key], 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON summary on stdout")
    parser.add_argument("--rps", type=float, default=25.0, help="rate of each latency run (they run at once)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each latency run")
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
        # gateway = forward_auth (a call to the auth service + Redis token bucket) + the proxy hop;
        # proxy_hop = the Caddy hop alone.
        report["read"] = reads
        report["gateway_added_p50_ms"] = added(reads["direct"], reads["gateway"])
        report["proxy_hop_added_p50_ms"] = added(reads["direct"], reads["proxy_hop"])
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
        report["mesh_gateway_added_p50_ms"] = added(reads["gateway"], mesh_reads["gateway"])
        two = added(mesh_reads["direct"], mesh_reads["two_sidecars"])
        two_p90 = added(mesh_reads["direct"], mesh_reads["two_sidecars"], "p90_ms")
        report["mesh_two_sidecars_added_p50_ms"] = two
        report["mesh_two_sidecars_added_p90_ms"] = two_p90
        report["mesh_added_p50_ms_per_hop"] = round(two / 2, 3) if two is not None else None
        report["istio_published"] = ISTIO_PUBLISHED
        target.down()
    finally:
        target.down()
        shutil.rmtree(root, ignore_errors=True)
    report["targets"] = {"cold_up_s": 10, "warm_up_s": 5, "total_rss_mb": 1024, "gateway_added_p50_ms": 0.5}
    if not args.json:
        log(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
