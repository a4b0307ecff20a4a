"""The app factory: every service is ``create_app(...)`` plus its own routers and event handlers.

It wires, in one place: JSON logging, the ASGI middleware (trace context, version header,
faults, RED metrics), the JWT verifier, PostgreSQL, NATS JetStream (outbox relay, consumers),
Redis, and the operational routes ``/healthz``, ``/readyz``, ``/metrics`` and ``/admin/fault``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import nats.errors
import redis.asyncio as aioredis
import redis.exceptions
import sqlalchemy.exc
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.common import auth, faults, metrics, passwords
from services.common.auth import AdminUser
from services.common.bus import Bus
from services.common.db import Database, OutboxEvent, ProcessedEvent, set_database
from services.common.logging import get_logger, setup_logging
from services.common.middleware import BodyLimitMiddleware, ServiceMiddleware
from services.common.settings import Settings

log = get_logger("cloudmart.app")

#: Each readiness check must answer within this, so that /readyz answers within the probe's 1 s.
READINESS_CHECK_TIMEOUT_S = 0.8

Hook = Callable[[FastAPI], Awaitable[None]]


@dataclass
class ServiceSpec:
    """What a service needs and adds; the factory does the rest."""

    settings: Settings
    title: str
    description: str
    routers: list[APIRouter]
    tables: list = field(default_factory=list)  # SQLAlchemy models; [] = no PostgreSQL
    uses_nats: bool = False
    uses_redis: bool = False
    #: Redis is a cache the service can do without: readiness reports it but does not fail on it,
    #: and the service starts without waiting for it.
    redis_optional: bool = False
    outbox: bool = False  # publishes events through the transactional outbox
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    readiness: dict[str, Callable[[FastAPI], Awaitable[None]]] = field(default_factory=dict)
    local_signing_key: object = None  # the auth service verifies with its own key


class Health(BaseModel):
    status: str
    service: str
    replica: str
    version: str


class Readiness(Health):
    checks: dict[str, str]


async def _retry(what: str, action: Callable[[], Awaitable[None]], timeout_s: float = 30.0) -> None:
    """Dependencies may start after us (or restart): retry ``action`` for a while."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await action()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} unavailable after {timeout_s:.0f} s: {exc}") from exc
            log.warning(f"{what} not ready, retrying", extra={"fields": {"error": str(exc)}})
            await asyncio.sleep(0.5)


def _ops_router(spec: ServiceSpec) -> APIRouter:
    s = spec.settings
    router = APIRouter(tags=["operations"])

    def health(state: str) -> dict:
        return {"status": state, "service": s.service_name, "replica": s.replica_id, "version": s.service_version}

    @router.get("/healthz", response_model=Health, summary="Liveness: the process serves requests")
    async def healthz() -> dict:
        return health("ok")

    @router.get("/readyz", response_model=Readiness, summary="Readiness: every dependency answers",
                responses={503: {"model": Readiness, "description": "A dependency is down"}})
    async def readyz(request: Request, response: Response) -> dict:
        async def run(name: str, check) -> str:
            try:
                await asyncio.wait_for(check(request.app), timeout=READINESS_CHECK_TIMEOUT_S)
                return "ok"
            except Exception as exc:  # report, never raise: this is a probe
                # The probe is public: it says what failed; why (addresses, messages) goes to the log.
                log.warning("readiness check failed", extra={"fields": {
                    "check": name, "error": f"{type(exc).__name__}: {exc}"[:200]}})
                return "failed"

        # All at once, and all within the kubelet's default probe timeout (1 s): sequential checks
        # of up to 2 s each made the probe time out whenever one store was slow.
        named = _readiness_checks(spec)
        results = await asyncio.gather(*(run(name, check) for name, check in named.items()))
        checks = dict(zip(named, results))
        optional = {"redis"} if spec.redis_optional else set()
        ready = all(v == "ok" for name, v in checks.items() if name not in optional)
        if not ready:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {**health("ready" if ready else "not ready"), "checks": checks}

    @router.get("/metrics", summary="Prometheus metrics (text exposition), for the scraper",
                description="Needs `Authorization: Bearer <scrape token>` (the token in "
                            "`<state dir>/metrics/scrape-token`) unless METRICS_AUTH=none.",
                response_class=Response, responses={200: {"content": {"text/plain": {}}},
                                                     401: {"description": "No or wrong scrape token"}})
    async def metrics_endpoint(request: Request) -> Response:
        if not metrics.scrape_allowed(request.app.state.scrape_token, request.headers.get("authorization")):
            return JSONResponse({"detail": "metrics are for the scraper: send its bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        body, content_type = metrics.exposition()
        return Response(content=body, media_type=content_type)

    fault = APIRouter(prefix="/admin/fault", tags=["admin"])

    @fault.get("", response_model=faults.FaultConfig, summary="This replica's injected faults")
    async def get_fault(_: AdminUser) -> faults.FaultConfig:
        return faults.state.public()

    @fault.put("", response_model=faults.FaultConfig, summary="Inject latency and/or errors into /api routes")
    async def put_fault(config: faults.FaultConfig, _: AdminUser) -> faults.FaultConfig:
        faults.state.set(config)
        log.warning("faults injected", extra={"fields": config.model_dump()})
        return faults.state.public()

    @fault.delete("", response_model=faults.FaultConfig, summary="Remove injected faults")
    async def delete_fault(_: AdminUser) -> faults.FaultConfig:
        faults.state.reset()
        return faults.state.public()

    _document_common_responses(fault)
    router.include_router(fault)
    return router


def _readiness_checks(spec: ServiceSpec) -> dict:
    checks = {}
    if spec.tables:
        checks["postgres"] = lambda app: app.state.db.ping()
    if spec.uses_nats:
        async def nats_check(app):
            if not app.state.bus.connected:
                raise ConnectionError("not connected to NATS")
            await app.state.bus.nc.flush(timeout=1)
        checks["nats"] = nats_check
    if spec.uses_redis:
        checks["redis"] = lambda app: app.state.redis.ping()
    checks.update(spec.readiness)
    return checks


def create_app(spec: ServiceSpec) -> FastAPI:
    """Build the FastAPI app of one service from its spec."""
    s = spec.settings
    setup_logging(s.service_name, s.replica_id, s.log_level)
    metrics.set_service(s.service_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        keys = auth.KeySource(s.auth_jwks_url, s.state_dir, local_key=spec.local_signing_key)
        auth.configure(auth.Verifier(keys, s.jwt_issuer, s.jwt_audience))
        app.state.settings = s
        app.state.scrape_token = (metrics.load_or_create_scrape_token(s.state_dir)
                                  if s.metrics_auth == "token" else None)
        if spec.tables:
            if not s.database_url:
                raise RuntimeError(f"{s.service_name}: DATABASE_URL is not set")
            app.state.db = Database(s.database_url)
            set_database(app.state.db)
            tables = list(spec.tables) + ([OutboxEvent, ProcessedEvent] if spec.uses_nats else [])
            await _retry("postgres", lambda: app.state.db.create_tables(tables))
        if spec.uses_redis:
            if not s.redis_url:
                raise RuntimeError(f"{s.service_name}: REDIS_URL is not set")
            # An optional cache must not cost more than a store read when Redis hangs.
            timeout_s = 0.5 if spec.redis_optional else 5
            app.state.redis = aioredis.from_url(s.redis_url, decode_responses=True,
                                                socket_connect_timeout=min(2, timeout_s), socket_timeout=timeout_s)
            if spec.redis_optional:   # the client connects on first use; until then, no cache
                try:
                    await asyncio.wait_for(app.state.redis.ping(), timeout=READINESS_CHECK_TIMEOUT_S)
                except Exception as exc:
                    log.warning("redis unavailable: serving without the cache", extra={"fields": {"error": str(exc)[:200]}})
            else:
                await _retry("redis", app.state.redis.ping)
        if spec.uses_nats:
            if not s.nats_url:
                raise RuntimeError(f"{s.service_name}: NATS_URL is not set")
            app.state.bus = Bus(s.nats_url, s.replica_id)
            await _retry("nats", app.state.bus.connect)
            if spec.outbox:
                app.state.bus.start_relay(app.state.db)
        for hook in spec.on_startup:
            await hook(app)
        log.info("started", extra={"fields": {"port": s.port, "version": s.service_version}})
        try:
            yield
        finally:
            for hook in spec.on_shutdown:
                await hook(app)
            if spec.uses_nats:
                await app.state.bus.close()
            if spec.uses_redis:
                await app.state.redis.aclose()
            if spec.tables:
                await app.state.db.close()

    # The API description is for developers: served only with CLOUDMART_API_DOCS=1.
    docs = {} if s.api_docs else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    app = FastAPI(title=spec.title, description=spec.description, version=s.service_version, lifespan=lifespan,
                  **docs)
    app.add_middleware(BodyLimitMiddleware, max_bytes=s.max_body_bytes)  # inside: 413s are counted too
    app.add_middleware(ServiceMiddleware, service_version=s.service_version, replica_id=s.replica_id)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422, rendered so that an input it echoes back (a lone surrogate, say)
        # cannot turn the answer into a 500.
        return _SafeJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)

    @app.exception_handler(sqlalchemy.exc.DataError)
    async def data_error(request: Request, exc: sqlalchemy.exc.DataError) -> JSONResponse:
        # The database's own message names tables and columns: log it, answer in our words.
        log.warning("value refused by the database", extra={"fields": {"error": str(exc.orig).splitlines()[0][:200]}})
        return JSONResponse({"detail": "invalid value: a number or text is out of the range this field stores"},
                            status_code=422)

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    async def db_down(request: Request, exc: sqlalchemy.exc.OperationalError) -> JSONResponse:
        log.error("database unavailable", extra={"fields": {"error": str(exc.orig)[:200]}})
        return JSONResponse({"detail": "database unavailable, retry later"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(redis.exceptions.RedisError)
    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("redis unavailable", extra={"fields": {"error": str(exc)[:200]}})
        return JSONResponse({"detail": "cache/rate-limit store unavailable, retry later"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(passwords.HasherBusy)
    async def hasher_busy(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "too many password checks in progress, retry later"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(nats.errors.Error)
    async def nats_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("event bus unavailable", extra={"fields": {"error": str(exc)[:200]}})
        return JSONResponse({"detail": "event store unavailable, retry later"}, status_code=503,
                            headers={"Retry-After": "1"})

    ops = _ops_router(spec)
    for router in [ops, *spec.routers]:
        _document_common_responses(router)
        app.include_router(router)
    return app


class _SafeJSONResponse(JSONResponse):
    """JSON whose strings may hold unencodable characters (lone surrogates): each becomes '?'."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=str).encode("utf-8", "replace")


class Problem(BaseModel):
    """Every CloudMart error: a human-readable ``detail``."""

    detail: str


def _dependency_calls(dependant) -> set:
    calls = {dependant.call}
    for sub in dependant.dependencies:
        calls |= _dependency_calls(sub)
    return calls


_PROBLEM_CONTENT = {"application/json": {"schema": {
    "title": "Problem", "type": "object", "required": ["detail"],
    "properties": {"detail": {"type": "string", "title": "Detail"}}}}}


def _document_common_responses(router: APIRouter) -> None:
    """Add to each route's OpenAPI the responses its shared dependencies and middleware produce:
    401 (token), 403 (admin role), 503 (dependency down, or a fault injected on /api routes)."""
    from fastapi.routing import APIRoute

    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        calls = _dependency_calls(route.dependant)
        prefix = router.prefix or ""
        path = route.path if prefix and route.path.startswith(prefix) else prefix + route.path
        extra = {}
        if calls & {auth.current_user, auth.admin_user, auth.optional_user}:
            extra[401] = "Missing, invalid or expired token"
        if auth.admin_user in calls:
            extra[403] = "The admin role is required"
        if path.startswith(("/api/", "/internal/")):
            extra[503] = "A dependency is unavailable, or a fault was injected"
        for code, description in extra.items():
            route.responses.setdefault(code, {"description": description, "content": _PROBLEM_CONTENT})


def serve(default_name: str, build_app: Callable[[Settings], FastAPI]) -> None:
    """Entry point of ``python -m services.<name>``: settings from the environment, then uvicorn.
    A bad setting is a one-line error and exit code 2, not a traceback."""
    import sys

    try:
        settings = Settings.from_env(default_name)
        app = build_app(settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    run(app, settings)


def run(app: FastAPI, settings: Settings) -> None:
    """Serve ``app`` with uvicorn on ``HOST``:``PORT`` (127.0.0.1:8080 by default)."""
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=5, server_header=False)
