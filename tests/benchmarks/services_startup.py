"""Benchmark: start-up time of the embedded infrastructure and of each service, RSS of every
process, and a short closed-loop checkout run: POST latency, saga duration (server-side, from the
order's created_at to its final updated_at), throughput and CPU per order of every process.

    .venv/bin/python tests/benchmarks/services_startup.py [--orders 200] [--concurrency 8] [--monolith]

Prints progress, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.infra import start_infra  # noqa: E402
from svc_stack import SERVICE_NAMES, Stack  # noqa: E402


def rss_mb(pid: int, with_children: bool = False) -> float:
    proc = psutil.Process(pid)
    procs = [proc] + (proc.children(recursive=True) if with_children else [])
    return round(sum(p.memory_info().rss for p in procs) / 2**20, 1)


def cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of a process and its children (postgres backends)."""
    total = 0.0
    for p in [proc] + proc.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def checkout_run(base: str, token: str, n_orders: int, concurrency: int) -> dict:
    """POST ``n_orders`` checkouts from ``concurrency`` clients, then wait until none is pending."""
    headers = {"Authorization": f"Bearer {token}"}
    accept_ms: list[float] = []
    lock = threading.Lock()
    todo = list(range(n_orders))

    def worker():
        with httpx.Client(timeout=30) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    todo.pop()
                started = time.perf_counter()
                r = client.post(base + "/api/orders", headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                                json={"items": [{"product_id": "9SIQT8TOJO", "quantity": 1}],
                                      "payment": {"card_number": "4242424242424242"}})
                r.raise_for_status()
                with lock:
                    accept_ms.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    posted_s = time.perf_counter() - started
    with httpx.Client(timeout=30, headers=headers) as client:
        while client.get(base + "/api/orders", params={"status": "pending", "limit": 1}).json():
            time.sleep(0.1)
        done_s = time.perf_counter() - started
        orders = client.get(base + "/api/orders", params={"limit": 500}).json()
    orders = orders[:n_orders]
    statuses: dict[str, int] = {}
    saga_ms = []
    for order in orders:
        statuses[order["status"]] = statuses.get(order["status"], 0) + 1
        saga_ms.append((datetime.fromisoformat(order["updated_at"]) -
                        datetime.fromisoformat(order["created_at"])).total_seconds() * 1000)
    q = statistics.quantiles(saga_ms, n=100)
    qa = statistics.quantiles(accept_ms, n=100)
    return {"orders": n_orders, "concurrency": concurrency, "statuses": statuses,
            "accepted_per_s": round(n_orders / posted_s, 1), "completed_per_s": round(n_orders / done_s, 1),
            "post_p50_ms": round(qa[49], 1), "post_p95_ms": round(qa[94], 1),
            "saga_p50_ms": round(q[49], 1), "saga_p95_ms": round(q[94], 1), "saga_p99_ms": round(q[98], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--monolith", action="store_true", help="also measure the monolith")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        infra = start_infra(Path(tmp) / "state")
        infra_s = round(time.perf_counter() - t0, 3)
        stack = Stack(infra=infra, log_dir=Path(tmp))
        try:
            for name in SERVICE_NAMES:
                svc = stack.add(name)
                svc.start()
                stack.startup_s[name] = round(svc.wait_ready(), 3)  # one at a time: honest per-service figures
                print(f"{name} ready in {stack.startup_s[name]} s", file=sys.stderr)
            token = httpx.post(stack.url("auth") + "/api/auth/token",
                               data={"grant_type": "password", "username": "alice", "password": "cloudmart"}).json()["access_token"]
            procs = {name: psutil.Process(svc.proc.pid) for name, svc in stack.services.items()}
            procs.update({kind: psutil.Process(info["pid"]) for kind, info in infra.servers.items()})
            cpu_before = {name: cpu_s(p) for name, p in procs.items()}
            run = checkout_run(stack.url("order"), token, args.orders, args.concurrency)
            run["cpu_ms_per_order"] = {name: round((cpu_s(p) - cpu_before[name]) * 1000 / args.orders, 2)
                                       for name, p in procs.items()}
            rss = {name: rss_mb(svc.proc.pid) for name, svc in stack.services.items()}
            rss.update({kind: rss_mb(info["pid"], with_children=(kind == "postgres"))
                        for kind, info in infra.servers.items()})
            result = {"infra_startup_s": infra_s, "infra_startup_detail_s": infra.startup_s,
                      "service_startup_s": stack.startup_s, "rss_mb_after_run": rss, "checkout": run}
            if args.monolith:
                mono = stack.add("monolith")
                mono.env.pop("PRODUCT_URL", None)
                mono.start()
                result["monolith_startup_s"] = round(mono.wait_ready(), 3)
                token_m = httpx.post(mono.url + "/api/auth/token",
                                     data={"grant_type": "password", "username": "alice", "password": "cloudmart"}).json()["access_token"]
                result["monolith_checkout"] = checkout_run(mono.url, token_m, args.orders, args.concurrency)
                result["monolith_rss_mb"] = rss_mb(mono.proc.pid)
        finally:
            stack.stop_all()
            infra.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
