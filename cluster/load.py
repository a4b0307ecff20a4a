"""Load generator: open-loop Poisson arrivals (default) or a closed loop of `concurrency` users.

Open loop: each request leaves at its arrival time, whatever the response times, so queueing
shows up as latency. Requests in flight are capped; an arrival over the cap is dropped and
counted, never delayed. Closed loop (`concurrency=N`): N workers that each send a request, wait
for its answer and an optional think time, and send the next — the offered rate then falls as the
system slows down (what a fixed pool of clients does; it hides queueing, which is the point of
comparing the two). Uses aiohttp (cheaper per request than httpx, so the generator is not the
bottleneck on a small machine).

Every request's response headers named in `record_headers` become columns (by default the
replica's `x-service-version` and `x-replica-id`, product's `x-cache`, and the rate-limit headers
`x-ratelimit-limit`/`-remaining`/`-reset` and `retry-after`). With `tokens=[...]` (one per
simulated user) each arrival is sent by one user drawn at random, always with that user's token;
`cohorts` assigns users to sticky cohorts (a user stays in its cohort for the whole run, and the
cohort's headers go with each of its requests). `popularity="zipf:s"` picks products with
probability proportional to 1/rank**s (rank = catalog order) instead of uniformly.

    from cluster.load import run_load
    result = run_load("http://127.0.0.1:8080", rps=20, seconds=10, scenario="browse", token=tok)
    result.summary["p99_ms"], result.requests.head()
    run_load(url, None, 10, "read", concurrency=8, think_time_s=0.1)          # closed loop
    run_load(url, 30, 10, "browse", tokens=toks, cohorts={"v2": (0.2, {"x-cloudmart-version": "v2"})},
             popularity="zipf:1.1")
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
RECORD_HEADERS = ("x-service-version", "x-replica-id", "x-cache", "x-ratelimit-limit", "x-ratelimit-remaining",
                  "x-ratelimit-reset", "retry-after")
MAX_CONCURRENCY = 1000
MAX_RPS = 2000.0
MAX_SECONDS = 3600.0
TEST_CARD = "4242424242424242"  # the payment service approves this test card


@dataclass
class LoadResult:
    """Per-request data and a summary.

    `requests` columns: t_s (scheduled arrival; in a closed loop, when it was sent), latency_ms,
    status (0: no answer), ok, path, ref (the order id of an accepted checkout), dispatch_lag_ms
    (how late the generator sent it), user (index into the tokens, -1 without), cohort, then one
    column per recorded response header (None where the response did not carry it).
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


def parse_popularity(popularity: str) -> float:
    """The Zipf exponent of "uniform" (0) or "zipf:s" (s >= 0)."""
    if popularity == "uniform":
        return 0.0
    if isinstance(popularity, str) and popularity.startswith("zipf:"):
        try:
            s = float(popularity[5:])
        except ValueError:
            s = float("nan")
        if np.isfinite(s) and 0 <= s <= 10:
            return s
    raise ValueError(f"popularity={popularity!r} is unknown: valid are 'uniform' or 'zipf:S' with 0 <= S <= 10")


def zipf_weights(n: int, s: float) -> np.ndarray:
    """P(rank k) = k**-s / sum_j j**-s, k = 1..n (a finite Zipf law; s = 0 is uniform)."""
    ranks = np.arange(1, n + 1, dtype=float)
    w = ranks ** -s
    return w / w.sum()


def assign_cohorts(n_users: int, cohorts: dict | None, seed: int | None) -> list[tuple[str, dict]]:
    """Sticky cohort of each user: a seeded shuffle of the users, cut by the cohorts' shares in
    order; users past the shares are in "default". Returns (name, headers) per user index."""
    out = [("default", {})] * n_users
    if not cohorts:
        return out
    if not isinstance(cohorts, dict):
        raise ValueError(f"cohorts={cohorts!r}: must be a dict name -> (share, headers)")
    total = 0.0
    for name, spec in cohorts.items():
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], dict)
                and isinstance(spec[0], (int, float)) and 0 <= spec[0] <= 1):
            raise ValueError(f"cohorts[{name!r}]={spec!r}: must be (share within 0..1, {{header: value}})")
        total += spec[0]
    if total > 1 + 1e-9:
        raise ValueError(f"cohorts: shares add up to {total:g}; valid: at most 1")
    order = np.random.default_rng(None if seed is None else seed + 7919).permutation(n_users)
    start = 0
    for name, (share, headers) in cohorts.items():
        count = int(round(share * n_users))
        for idx in order[start:start + count]:
            out[int(idx)] = (str(name), dict(headers))
        start += count
    return out


class _Scenario:
    """What one arrival does: pick a request, send it, report (status, path, ref, headers)."""

    def __init__(self, name: str, session: aiohttp.ClientSession, base_url: str, rng: np.random.Generator,
                 headers: dict[str, str], zipf_s: float = 0.0, record: tuple[str, ...] = RECORD_HEADERS):
        self.name, self.session, self.base_url, self.rng, self.headers = name, session, base_url, rng, headers
        self.zipf_s = zipf_s
        self.record = tuple(h.lower() for h in record)
        self.product_ids: list[str] = []
        self.weights: np.ndarray | None = None
        self.retries = 0

    async def prepare(self) -> None:
        body = []
        for _ in range(8):   # a failing replica (an injected fault) must not stop the run before it starts
            async with self.session.get(f"{self.base_url}/api/products", headers=self.headers) as resp:
                if resp.status == 200:
                    body = await resp.json(content_type=None)
                    break
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
        self.weights = zipf_weights(len(ids), self.zipf_s) if self.zipf_s else None

    def pick(self) -> str:
        if self.weights is None:
            return self.product_ids[int(self.rng.integers(len(self.product_ids)))]
        return self.product_ids[int(self.rng.choice(len(self.product_ids), p=self.weights))]

    def _headers_of(self, resp) -> tuple:
        return tuple(resp.headers.get(h) for h in self.record)

    async def fire(self, extra: dict[str, str] | None = None) -> tuple[int, str, str, tuple]:
        headers = {**self.headers, **(extra or {})}
        pid = self.pick()
        if self.name in ("browse", "read"):
            path = f"/api/products/{pid}"
            if self.name == "browse" and self.rng.random() < 0.5:
                path = "/api/products"
            async with self.session.get(self.base_url + path, headers=headers) as resp:
                await resp.read()
                return resp.status, path, "", self._headers_of(resp)
        path = "/api/orders"
        headers["Idempotency-Key"] = str(uuid.uuid4())
        body = {"items": [{"product_id": pid, "quantity": 1}], "payment": {"card_number": TEST_CARD}}
        async with self.session.post(self.base_url + path, json=body, headers=headers) as resp:
            raw = await resp.read()
            ref = ""
            if resp.status == 202:   # accepted: keep the order id, so that its fate can be checked
                try:
                    ref = str(json.loads(raw).get("id", ""))
                except ValueError:
                    pass
            return resp.status, path, ref, self._headers_of(resp)


async def run_load_async(base_url: str, rps: float | None, seconds: float, scenario: str = "browse", *,
                         token: str | None = None, seed: int | None = None, max_in_flight: int = 256,
                         timeout_s: float = 10.0, headers: dict[str, str] | None = None,
                         tokens: list[str] | None = None, cohorts: dict | None = None,
                         concurrency: int | None = None, think_time_s: float = 0.0,
                         popularity: str = "uniform",
                         record_headers: tuple[str, ...] = RECORD_HEADERS) -> LoadResult:
    """Async form of :func:`run_load`."""
    _check(rps, seconds, scenario, max_in_flight, concurrency=concurrency, tokens=tokens,
           think_time_s=think_time_s)
    zipf_s = parse_popularity(popularity)
    record = tuple(str(h).lower() for h in record_headers)
    rng = np.random.default_rng(seed)
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    users = list(tokens or [])
    user_cohorts = assign_cohorts(len(users), cohorts, seed) if users else []
    if cohorts and not users:
        raise ValueError("cohorts need users: pass tokens=[...] (cm.load(users=N))")
    user_rng = np.random.default_rng(None if seed is None else seed + 104729)

    def user_headers() -> tuple[int, str, dict]:
        if not users:
            return -1, "", {}
        u = int(user_rng.integers(len(users)))
        cohort, extra = user_cohorts[u]
        return u, cohort, {**extra, "Authorization": f"Bearer {users[u]}"}

    rows: list[tuple] = []
    dropped = 0
    in_flight = 0
    limit = max_in_flight if concurrency is None else concurrency
    connector = aiohttp.TCPConnector(limit=limit, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        work = _Scenario(scenario, session, base_url.rstrip("/"), rng, hdrs, zipf_s, record)
        await work.prepare()
        blank = (None,) * len(record)

        async def send(t_s: float, lag_ms: float) -> None:
            u, cohort, extra = user_headers()
            start = time.perf_counter()
            try:
                try:
                    status, path, ref, got = await work.fire(extra)
                except aiohttp.ServerDisconnectedError:
                    # A kept-alive connection the server closed as we reused it (a proxy closes idle
                    # connections when it reloads its config): the request never got in, so send it
                    # again once, as HTTP clients do. Safe: reads, and orders carry an Idempotency-Key.
                    work.retries += 1
                    status, path, ref, got = await work.fire(extra)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                status, path, ref, got = 0, "", "", blank
            rows.append((t_s, (time.perf_counter() - start) * 1000.0, status, 200 <= status < 400, path, ref, lag_ms,
                         u, cohort, *got))

        t0 = time.perf_counter()
        if concurrency is None:
            # Arrival times of a Poisson process: exponential gaps with mean 1/rps, cut at `seconds`.
            n_max = int(rps * seconds + 10 * np.sqrt(rps * seconds) + 10)
            arrivals = np.cumsum(rng.exponential(1.0 / rps, n_max))
            arrivals = arrivals[arrivals < seconds]

            async def one(t_s: float, lag_ms: float) -> None:
                nonlocal in_flight
                try:
                    await send(t_s, lag_ms)
                finally:
                    in_flight -= 1

            tasks = []
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
        else:
            think_rng = np.random.default_rng(None if seed is None else seed + 15485863)

            async def worker() -> None:
                # Send, wait for the answer, think (exponential, mean think_time_s), repeat.
                while (now := time.perf_counter() - t0) < seconds:
                    await send(now, 0.0)
                    if think_time_s > 0:
                        await asyncio.sleep(float(think_rng.exponential(think_time_s)))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall_s = max(seconds, time.perf_counter() - t0)
    df = pd.DataFrame(rows, columns=["t_s", "latency_ms", "status", "ok", "path", "ref", "dispatch_lag_ms",
                                     "user", "cohort", *record])
    df = df.sort_values("t_s", ignore_index=True)
    summary = summarize(df, scenario=scenario, rps=rps, seconds=seconds, dropped=dropped, wall_s=wall_s)
    summary["retried_stale_connections"] = work.retries
    summary["mode"] = "open" if concurrency is None else "closed"
    if concurrency is not None:
        summary["concurrency"] = concurrency
        summary["think_time_s"] = think_time_s
    summary["users"] = len(users)
    summary["popularity"] = popularity
    return LoadResult(df, summary)


def _check(rps: float | None, seconds: float, scenario: str, max_in_flight: int, *, concurrency: int | None = None,
           tokens: list[str] | None = None, think_time_s: float = 0.0) -> None:
    if concurrency is not None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency={concurrency!r} is out of range: must be an integer 1..{MAX_CONCURRENCY}")
        if rps is not None:
            raise ValueError(f"rps={rps!r} with concurrency={concurrency}: a closed loop sets its own rate; pass rps=None")
    elif not (isinstance(rps, (int, float)) and not isinstance(rps, bool) and 0 < rps <= MAX_RPS):
        raise ValueError(f"rps={rps!r} is out of range: must be > 0 and <= {MAX_RPS:g}")
    if not (isinstance(think_time_s, (int, float)) and 0 <= think_time_s <= 60):
        raise ValueError(f"think_time_s={think_time_s!r} is out of range: must be within 0..60")
    if tokens is not None and (not isinstance(tokens, (list, tuple)) or not tokens
                               or not all(isinstance(t, str) and t for t in tokens)):
        raise ValueError("tokens: must be a non-empty list of bearer tokens, one per simulated user")
    if not (isinstance(seconds, (int, float)) and 0 < seconds <= MAX_SECONDS):
        raise ValueError(f"seconds={seconds!r} is out of range: must be > 0 and <= {MAX_SECONDS:g}")
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r} is unknown: valid are {', '.join(SCENARIOS)}")
    if not (isinstance(max_in_flight, int) and max_in_flight >= 1):
        raise ValueError(f"max_in_flight={max_in_flight!r} must be an integer >= 1")


def run_load(base_url: str, rps: float | None, seconds: float, scenario: str = "browse", **kw) -> LoadResult:
    """Send open-loop Poisson load for `seconds` at `rps` (or, with `concurrency=N` and
    rps=None, a closed loop of N users) and return per-request data.

    Works from plain scripts and from Jupyter (where an event loop already runs: the load then
    runs on its own loop in a worker thread).
    """
    _check(rps, seconds, scenario, kw.get("max_in_flight", 256), concurrency=kw.get("concurrency"),
           tokens=kw.get("tokens"), think_time_s=kw.get("think_time_s", 0.0))
    parse_popularity(kw.get("popularity", "uniform"))
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
