"""Open-loop load generator: Poisson arrivals sent on schedule, whatever the response times.

A closed loop (N users that wait for each answer) slows down with the system it measures and so
hides queueing; here each request leaves at its arrival time. Requests in flight are capped; an
arrival over the cap is dropped and counted, never delayed. Uses aiohttp (cheaper per request
than httpx, so the generator is not the bottleneck on a small machine).

    from cluster.load import run_load
    result = run_load("http://127.0.0.1:8080", rps=20, seconds=10, scenario="browse", token=tok)
    result.summary["p99_ms"], result.requests.head()
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import pandas as pd

SCENARIOS = ("browse", "checkout", "read")  # read: one product by id, for latency benchmarks
MAX_RPS = 2000.0
MAX_SECONDS = 3600.0
TEST_CARD = "4242424242424242"  # the payment service approves this test card


@dataclass
class LoadResult:
    """Per-request data and a summary.

    `requests` columns: t_s (scheduled arrival), latency_ms, status (0: no answer), ok, path,
    ref (the order id of an accepted checkout), dispatch_lag_ms (how late the generator sent it).
    """

    requests: pd.DataFrame
    summary: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        s = self.summary
        return (f"LoadResult({s.get('scenario')}: {s.get('sent')} sent at {s.get('offered_rps')}/s over "
                f"{s.get('seconds')} s, p50={s.get('p50_ms')} ms p95={s.get('p95_ms')} ms "
                f"p99={s.get('p99_ms')} ms, error_rate={s.get('error_rate')}, dropped={s.get('dropped')})")


def summarize(df: pd.DataFrame, *, scenario: str, rps: float, seconds: float, dropped: int,
              wall_s: float) -> dict:
    """Percentiles, error rate and throughput of a run."""
    ok = df[df["ok"]] if len(df) else df
    lat = ok["latency_ms"] if len(ok) else pd.Series(dtype=float)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(lat, q)), 3) if len(lat) else None

    return {
        "scenario": scenario, "offered_rps": rps, "seconds": seconds, "sent": int(len(df)),
        "ok": int(df["ok"].sum()) if len(df) else 0, "dropped": int(dropped),
        "error_rate": round(float(1 - df["ok"].mean()), 4) if len(df) else None,
        "throughput_rps": round(float(len(ok) / wall_s), 3) if wall_s > 0 else None,
        "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
        "mean_ms": round(float(lat.mean()), 3) if len(lat) else None,
        "status_counts": {str(k): int(v) for k, v in df["status"].value_counts().sort_index().items()} if len(df) else {},
    }


class _Scenario:
    """What one arrival does: pick a request, send it, report (status, path)."""

    def __init__(self, name: str, session: aiohttp.ClientSession, base_url: str, rng: np.random.Generator,
                 headers: dict[str, str]):
        self.name, self.session, self.base_url, self.rng, self.headers = name, session, base_url, rng, headers
        self.product_ids: list[str] = []
        self.retries = 0

    async def prepare(self) -> None:
        async with self.session.get(f"{self.base_url}/api/products", headers=self.headers) as resp:
            body = await resp.json(content_type=None) if resp.status == 200 else []
        items = body.get("items", body) if isinstance(body, dict) else body
        ids = [str(p.get("id")) for p in items or [] if isinstance(p, dict) and p.get("id") is not None]
        if self.name == "checkout":
            in_stock = []
            for pid in ids:
                async with self.session.get(f"{self.base_url}/api/inventory/{pid}", headers=self.headers) as resp:
                    if resp.status == 200:
                        info = await resp.json(content_type=None)
                        if int(info.get("available", info.get("quantity", 0)) or 0) > 0:
                            in_stock.append(pid)
            ids = in_stock
        if not ids:
            raise RuntimeError(f"scenario {self.name!r}: no {'in-stock ' if self.name == 'checkout' else ''}"
                               f"product found through {self.base_url}/api/products")
        self.product_ids = ids

    async def fire(self) -> tuple[int, str, str]:
        pid = self.product_ids[int(self.rng.integers(len(self.product_ids)))]
        if self.name in ("browse", "read"):
            path = f"/api/products/{pid}"
            if self.name == "browse" and self.rng.random() < 0.5:
                path = "/api/products"
            async with self.session.get(self.base_url + path, headers=self.headers) as resp:
                await resp.read()
                return resp.status, path, ""
        path = "/api/orders"
        headers = {**self.headers, "Idempotency-Key": str(uuid.uuid4())}
        body = {"items": [{"product_id": pid, "quantity": 1}], "payment": {"card_number": TEST_CARD}}
        async with self.session.post(self.base_url + path, json=body, headers=headers) as resp:
            raw = await resp.read()
            ref = ""
            if resp.status == 202:   # accepted: keep the order id, so that its fate can be checked
                try:
                    ref = str(json.loads(raw).get("id", ""))
                except ValueError:
                    pass
            return resp.status, path, ref


async def run_load_async(base_url: str, rps: float, seconds: float, scenario: str = "browse", *,
                         token: str | None = None, seed: int | None = None, max_in_flight: int = 256,
                         timeout_s: float = 10.0, headers: dict[str, str] | None = None) -> LoadResult:
    """Async form of :func:`run_load`."""
    _check(rps, seconds, scenario, max_in_flight)
    rng = np.random.default_rng(seed)
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    # Arrival times of a Poisson process: exponential gaps with mean 1/rps, cut at `seconds`.
    n_max = int(rps * seconds + 10 * np.sqrt(rps * seconds) + 10)
    arrivals = np.cumsum(rng.exponential(1.0 / rps, n_max))
    arrivals = arrivals[arrivals < seconds]
    rows: list[tuple] = []
    dropped = 0
    in_flight = 0
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        work = _Scenario(scenario, session, base_url.rstrip("/"), rng, hdrs)
        await work.prepare()

        async def one(t_s: float, lag_ms: float) -> None:
            nonlocal in_flight
            start = time.perf_counter()
            try:
                try:
                    status, path, ref = await work.fire()
                except aiohttp.ServerDisconnectedError:
                    # A kept-alive connection the server closed as we reused it (a proxy closes idle
                    # connections when it reloads its config): the request never got in, so send it
                    # again once, as HTTP clients do. Safe: reads, and orders carry an Idempotency-Key.
                    work.retries += 1
                    status, path, ref = await work.fire()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                status, path, ref = 0, "", ""
            finally:
                in_flight -= 1
            rows.append((t_s, (time.perf_counter() - start) * 1000.0, status, 200 <= status < 400, path, ref, lag_ms))

        tasks = []
        t0 = time.perf_counter()
        for t_s in arrivals:
            delay = t0 + t_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= max_in_flight:
                dropped += 1
                continue
            in_flight += 1
            lag_ms = max(0.0, (time.perf_counter() - t0 - t_s) * 1000.0)
            tasks.append(asyncio.create_task(one(float(t_s), lag_ms)))
        if tasks:
            await asyncio.gather(*tasks)
        wall_s = max(seconds, time.perf_counter() - t0)
    df = pd.DataFrame(rows, columns=["t_s", "latency_ms", "status", "ok", "path", "ref",
                                     "dispatch_lag_ms"])
    df = df.sort_values("t_s", ignore_index=True)
    summary = summarize(df, scenario=scenario, rps=rps, seconds=seconds, dropped=dropped, wall_s=wall_s)
    summary["retried_stale_connections"] = work.retries
    return LoadResult(df, summary)


def _check(rps: float, seconds: float, scenario: str, max_in_flight: int) -> None:
    if not (isinstance(rps, (int, float)) and 0 < rps <= MAX_RPS):
        raise ValueError(f"rps={rps!r} is out of range: must be > 0 and <= {MAX_RPS:g}")
    if not (isinstance(seconds, (int, float)) and 0 < seconds <= MAX_SECONDS):
        raise ValueError(f"seconds={seconds!r} is out of range: must be > 0 and <= {MAX_SECONDS:g}")
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r} is unknown: valid are {', '.join(SCENARIOS)}")
    if not (isinstance(max_in_flight, int) and max_in_flight >= 1):
        raise ValueError(f"max_in_flight={max_in_flight!r} must be an integer >= 1")


def run_load(base_url: str, rps: float, seconds: float, scenario: str = "browse", **kw) -> LoadResult:
    """Send open-loop Poisson load for `seconds` at `rps` and return per-request data.

    Works from plain scripts and from Jupyter (where an event loop already runs: the load then
    runs on its own loop in a worker thread).
    """
    _check(rps, seconds, scenario, kw.get("max_in_flight", 256))
    return run_sync(run_load_async(base_url, rps, seconds, scenario, **kw))


def run_sync(coro):
    """Run a coroutine to completion from synchronous code, also inside Jupyter.

    Jupyter's kernel already runs an event loop, so there the coroutine gets its own loop in a
    worker thread; an exception is re-raised in the caller's thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict = {}

    def worker() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
