"""Benchmark of the monolith behind the gateway: idle checkout latency, and recovery after a stall.

    python tests/benchmarks/monolith_checkout.py [--rps 10] [--seconds 14] [--stall-s 5.5]

Starts its own CloudMart (`--monolith`) in a temporary state folder on a free port (loopback
only), then:

1. times 20 checkouts one after another with the server otherwise idle (through the gateway);
2. sends open-loop checkouts at `--rps` for `--seconds`, stops the monolith process (SIGSTOP) for
   `--stall-s` seconds 2 s in, then resumes it, and reports the status counts and the latency of
   the requests sent after it resumed (a gateway that still holds the replica down answers them
   late or with 503 "no upstreams available").

Stops everything and prints one JSON object as the last line. Timings are noisy on a shared
machine: they are figures to read, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster.handle import CloudMart  # noqa: E402
from cluster.local import LocalTarget  # noqa: E402
from cluster.load import TEST_CARD  # noqa: E402
from services.infra import free_port  # outside the ephemeral range: no outgoing connection takes it


def idle_checkouts(cm: CloudMart, n: int = 20) -> dict:
    pid = cm.get("/api/products").json()["items"][0]["id"]
    body = {"items": [{"product_id": pid, "quantity": 1}], "payment": {"card_number": TEST_CARD}}
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        resp = cm.post("/api/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        latencies.append((time.perf_counter() - start) * 1000)
        if resp.status_code != 202:
            raise RuntimeError(f"checkout answered {resp.status_code}: {resp.text[:200]}")
        time.sleep(0.3)
    return {"idle_checkout_first_ms": round(latencies[0], 1),
            "idle_checkout_median_ms": round(statistics.median(latencies), 1)}


def stalled_load(cm: CloudMart, rps: float, seconds: float, stall_s: float) -> dict:
    pid = cm.status()["deployments"]["monolith"]["replicas"][0]["pid"]
    stall_at_s = 2.0

    def stall():
        time.sleep(stall_at_s)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(stall_s)
        finally:
            os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=stall)
    thread.start()
    try:
        result = cm.load(rps, seconds, scenario="checkout", seed=1)
    finally:
        thread.join()
    df = result.requests
    after = df[df.t_s > stall_at_s + stall_s + 0.1]
    return {"sent": result.summary["sent"], "status_counts": result.summary["status_counts"],
            "after_resume_sent": int(len(after)),
            "after_resume_non_202": int((after.status != 202).sum()),
            "after_resume_p50_ms": round(float(after.latency_ms.median()), 1) if len(after) else None,
            "after_resume_p99_ms": round(float(after.latency_ms.quantile(0.99)), 1) if len(after) else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=14.0)
    parser.add_argument("--stall-s", type=float, default=5.5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cloudmart-mono-bench-"))
    target = LocalTarget(tmp / "state")
    out: dict = {"rps": args.rps, "seconds": args.seconds, "stall_s": args.stall_s}
    try:
        start = time.monotonic()
        target.up(port=free_port(), monolith=True)
        out["up_s"] = round(time.monotonic() - start, 2)
        cm = CloudMart(target, user="alice")
        out.update(idle_checkouts(cm))
        out.update(stalled_load(cm, args.rps, args.seconds, args.stall_s))
        cm.close()
    finally:
        target.down(timeout_s=30)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
