"""`cloudmart reset`: put a running local CloudMart back into the state a fresh `cloudmart up`
leaves it in, in seconds, so an instructor can restart a demo without a full down/up.

A reset is an ordered list of steps (:data:`STEPS`), each a function ``step(ctx) -> [changes]``
that looks at what differs and changes only that, so a second reset reports nothing:

1. ``canary``   — every canary weight back to 0;
2. ``data``     — every store whose content is not the fresh one is emptied and seeded again
   in place, with the services' own seeding functions: each service's PostgreSQL tables (the
   inventory's stock seeded), the product catalogue, Redis (caches, rate-limit buckets, deny
   list), the JetStream streams (purged; the durable consumers stay). No process restarts: no
   service keeps data in memory that these stores do not hold (`services/` reads them per
   request);
3. ``objects``  — the desired state of the local control plane back to the manifests (applied
   objects pruned or restored, deleted ones back, revision histories cleared; rollouts waited for);
4. ``scale``    — every Deployment at the replicas the manifests give it (canaries at 0);
5. ``faults``   — injected latency and errors cleared on every replica that has them;
6. ``budgets``  — the Kubecost-style budgets of the FinOps API deleted.

Later parts of CloudMart add their own step with :func:`reset_step`. A store the environment gives by URL (``DATABASE_URL``, ``MONGO_URL``)
is not CloudMart's to empty: the step says so and leaves it.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["ResetContext", "StepResult", "STEPS", "reset", "reset_step", "manifest_replicas"]


@dataclass
class ResetContext:
    """What a step may use: the target (``LocalTarget``: status, scale, canary), the state folder,
    what to keep, and the fresh replica counts."""

    target: object
    state_dir: object
    keep_data: bool = False
    wanted: dict[str, int] = field(default_factory=dict)   # the fresh replica count per Deployment


@dataclass
class StepResult:
    name: str
    changed: list[str]
    seconds: float
    skipped: str = ""

    def to_dict(self) -> dict:
        return {"step": self.name, "changed": self.changed, "seconds": round(self.seconds, 2),
                "skipped": self.skipped}


class StepSkipped(Exception):
    """Raised by a step that does not apply here (the message says why)."""


Step = Callable[[ResetContext], list[str]]
STEPS: list[tuple[str, Step]] = []


def reset_step(name: str, before: str | None = None) -> Callable[[Step], Step]:
    """Register ``fn(ctx) -> [what changed]`` as the reset step ``name`` (at the end, or before
    the step named ``before``)."""

    def register(fn: Step) -> Step:
        if any(n == name for n, _ in STEPS):
            raise ValueError(f"reset step {name!r} is already registered")
        index = len(STEPS)
        if before is not None:
            names = [n for n, _ in STEPS]
            if before not in names:
                raise ValueError(f"before={before!r}: no such step; valid: {', '.join(names)}")
            index = names.index(before)
        STEPS.insert(index, (name, fn))
        return fn

    return register


def manifest_replicas(deployments: dict) -> dict[str, int]:
    """The replica count a fresh `cloudmart up` gives each running Deployment (from the manifests)."""
    from cluster import topology

    manifests = os.environ.get("CLOUDMART_MANIFESTS")
    try:
        declared = topology.load(manifests) if manifests else topology.load()
        counts = {name: dep.replicas for name, dep in declared.deployments.items()}
    except Exception:  # noqa: BLE001 — a target without manifests (monolith): one replica each
        counts = {}
    return {name: counts.get(name, 0 if name.endswith("-canary") else 1) for name in deployments}


# ----- the steps -------------------------------------------------------------------------------

@reset_step("canary")
def _canary(ctx: ResetContext) -> list[str]:
    status = ctx.target.status()
    changed = []
    for name in status["deployments"]:
        if not name.endswith("-canary"):
            continue
        service = name.removesuffix("-canary")
        if (status.get("weights") or {}).get(name, 0):
            ctx.target.canary(service, 0)
            changed.append(f"{service}: canary weight -> 0")
    return changed


def _seed_stock(url: str) -> None:
    """The inventory service's own seeding (services/inventory/domain.py), on its database."""
    from services.common.db import Database
    from services.inventory import domain

    async def run():
        db = Database(url)
        try:
            async with db.sessions() as session, session.begin():
                await domain.seed_stock(session)
        finally:
            await db.engine.dispose()

    asyncio.run(run())


def _fresh_stock() -> set[tuple]:
    from services.common.demo import CATALOG

    return {(p["id"], p["initial_stock"], 0, 0) for p in CATALOG}


def _reset_postgres(infra) -> list[str]:
    """Empty every table of each service's database whose content is not the fresh one; the
    inventory's stock is seeded again by the inventory service's own seeding function."""
    import psycopg

    from services.infra import PG_SERVICES

    if "postgres" in infra.external:
        return ["postgres kept: DATABASE_URL is set (that database is not CloudMart's to empty)"]
    changed = []
    for service in PG_SERVICES:
        try:
            conn = psycopg.connect(infra.database_url(service), connect_timeout=5, autocommit=True)
        except psycopg.OperationalError:
            continue   # a database that was never created (the monolith's, in microservices mode)
        with conn:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
            rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
            seeded = "stock" in tables and service in ("inventory", "monolith")
            fresh_stock = not seeded or {tuple(r) for r in conn.execute(
                "SELECT product_id, available, reserved, sold FROM stock")} == _fresh_stock()
            extra = sum(n for t, n in rows.items() if not (seeded and t == "stock"))
            if extra == 0 and fresh_stock:
                continue
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
            changed.append(f"postgres {service}: {sum(rows.values())} rows in {len(tables)} tables emptied"
                           + (", stock seeded" if seeded else ""))
        if seeded:
            _seed_stock(infra.database_url(service))
    return changed


def _reset_catalogue(state_dir) -> list[str]:
    """The product catalogue back to the demo catalogue (the product service's own seeding)."""
    if os.environ.get("MONGO_URL"):
        return ["product catalogue kept: MONGO_URL is set"]
    from services.common.demo import CATALOG
    from services.product.store import CatalogStore

    fresh = {p["id"]: {k: v for k, v in p.items() if k not in ("id", "initial_stock")} for p in CATALOG}
    store = CatalogStore(None, state_dir)
    try:
        docs = store._run(lambda: list(store.products.find({})))
        now = {d["_id"]: {k: v for k, v in d.items() if k != "_id"} for d in docs}
        if now == fresh:
            return []
        store._run(lambda: store.products.delete_many({}))
        store.seed()
    finally:
        store.client.close()
    return [f"product catalogue: {len(docs)} documents replaced by the {len(fresh)} of the demo catalogue"]


def _flush_redis(infra) -> list[str]:
    import redis

    if "redis" in infra.external:
        return ["redis kept: REDIS_URL is set"]
    client = redis.Redis.from_url(infra.redis_url, socket_timeout=5)
    try:
        keys = client.dbsize()
        if keys:
            client.flushall()   # caches, rate-limit buckets, the token deny list, login throttles
    finally:
        client.close()
    return [f"redis: {keys} keys removed"] if keys else []


async def _purge_streams(url: str) -> list[str]:
    import nats
    from nats.js.errors import NotFoundError

    from services.common.bus import STREAMS

    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1)
    changed = []
    try:
        js = nc.jetstream(timeout=5)
        for name in STREAMS:
            try:
                info = await js.stream_info(name)
            except NotFoundError:
                continue
            if info.state.messages:
                # Purged, not deleted: the services' durable consumers stay attached.
                await js.purge_stream(name)
                changed.append(f"jetstream {name}: {info.state.messages} events removed")
    finally:
        await nc.close()
    return changed


@reset_step("data")
def _data(ctx: ResetContext) -> list[str]:
    if ctx.keep_data:
        raise StepSkipped("--keep-data")
    from services.infra import load_infra

    infra = load_infra(ctx.state_dir)
    changed = _reset_postgres(infra) + _reset_catalogue(ctx.state_dir) + _flush_redis(infra)
    if "nats" not in infra.external:
        changed += asyncio.run(_purge_streams(infra.nats_url))
    return changed


def _wait_ready(ctx: ResetContext, timeout_s: float = 120.0) -> None:
    from cluster.local import TargetError

    deadline = time.monotonic() + timeout_s
    while True:
        status = ctx.target.status()
        if status["ready"] and all(d["ready"] >= ctx.wanted.get(n, d["wanted"])
                                   for n, d in status["deployments"].items()):
            return
        if time.monotonic() > deadline:
            late = [n for n, d in status["deployments"].items() if d["ready"] < d["wanted"]]
            raise TargetError(f"not ready {timeout_s:.0f} s after the reset: {', '.join(late) or 'gateway'}")
        time.sleep(0.1)


@reset_step("objects")
def _objects(ctx: ResetContext) -> list[str]:
    from cluster.control import ApplyError

    if not hasattr(ctx.target, "reset_objects"):
        raise StepSkipped("this target has no control plane of CloudMart's")
    try:
        changed = ctx.target.reset_objects()
    except ApplyError as exc:
        if exc.status == 409:   # the monolith takes no applied objects
            raise StepSkipped(str(exc)) from None
        raise
    if changed:
        deadline = time.monotonic() + 120
        while any(r.get("phase") == "Progressing" for r in (ctx.target.status().get("rollouts") or {}).values()):
            if time.monotonic() > deadline:
                from cluster.local import TargetError

                raise TargetError("rollouts back to the manifests not finished after 120 s")
            time.sleep(0.1)
        _wait_ready(ctx)
    return changed


@reset_step("scale")
def _scale(ctx: ResetContext) -> list[str]:
    changed = []
    for name, dep in ctx.target.status()["deployments"].items():
        want = ctx.wanted.get(name, dep["wanted"])
        if dep["wanted"] != want:
            ctx.target.scale(name, want)
            changed.append(f"{name}: replicas {dep['wanted']} -> {want}")
    if changed:
        _wait_ready(ctx)
    return changed


@reset_step("faults")
def _faults(ctx: ResetContext) -> list[str]:
    from cluster.handle import CloudMart

    cm = None   # the handle's own /admin/fault call and admin login, made only if a replica is ready
    changed = []
    for dep in ctx.target.status()["deployments"].values():
        for rep in dep["replicas"]:
            if not rep["ready"]:
                continue
            cm = cm or CloudMart(ctx.target, user=None)
            body = cm._replica_fault(rep, "GET", None)
            if body.get("latency_ms") or body.get("error_rate"):
                cm._replica_fault(rep, "DELETE", None)
                changed.append(f"{rep['id']}: faults cleared")
    return changed


@reset_step("budgets")
def _budgets(ctx: ResetContext) -> list[str]:
    import json
    from pathlib import Path

    import httpx

    try:   # the FinOps API's port (cluster/finops/server.py writes run/opencost.json)
        port = json.loads((Path(ctx.state_dir) / "run" / "opencost.json").read_text())["port"]
    except (OSError, ValueError, KeyError, TypeError):
        raise StepSkipped("this CloudMart serves no FinOps API") from None
    base = f"http://127.0.0.1:{port}"
    resp = httpx.get(f"{base}/model/budgets", timeout=10)
    resp.raise_for_status()
    changed = []
    for budget in resp.json().get("data") or []:
        httpx.delete(f"{base}/model/deleteBudget", params={"id": budget["id"]}, timeout=10).raise_for_status()
        changed.append(f"budget {budget.get('name') or budget['id']} deleted")
    return changed


# ----- running them ------------------------------------------------------------------------------

def reset(target, keep_data: bool = False, steps: list[str] | None = None) -> list[StepResult]:
    """Run the reset steps in order (``steps``: a subset by name) on a ``LocalTarget`` (or a
    ``connect()`` handle); what each changed and its time."""
    target = getattr(target, "target", target)
    names = [n for n, _ in STEPS]
    if steps is not None:
        unknown = sorted(set(steps) - set(names))
        if unknown:
            raise ValueError(f"unknown reset step(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    ctx = ResetContext(target=target, state_dir=target.state_dir, keep_data=keep_data,
                       wanted=manifest_replicas(target.status()["deployments"]))
    results = []
    for name, fn in STEPS:
        if steps is not None and name not in steps:
            continue
        t0 = time.monotonic()
        try:
            results.append(StepResult(name, fn(ctx), time.monotonic() - t0))
        except StepSkipped as why:
            results.append(StepResult(name, [], time.monotonic() - t0, skipped=str(why)))
    return results
