"""ASGI middleware of every service: trace context, version header, faults, RED metrics; body limit."""

from __future__ import annotations

import json
import logging
import time

from starlette.exceptions import HTTPException

from services.common import faults, metrics, tracing
from services.common.logging import get_logger

log = get_logger("cloudmart.http")

_FAULT_BODY = json.dumps({"detail": "injected fault: this replica is failing on purpose"}).encode()


class ServiceMiddleware:
    """Pure ASGI middleware (cheaper per request than BaseHTTPMiddleware)."""

    def __init__(self, app, service_version: str, replica_id: str):
        self.app = app
        self.version_header = (b"x-service-version", service_version.encode())
        self.replica_header = (b"x-replica-id", replica_id.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        traceparent = None
        for name, value in scope.get("headers", ()):
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
                break
        token = tracing.start(traceparent)
        started = time.perf_counter()
        status_holder = {"status": 500}
        extra_headers = [self.version_header, self.replica_header,
                         (b"traceparent", tracing.traceparent().encode())]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message = {**message, "headers": list(message.get("headers", [])) + extra_headers}
            await send(message)

        path = scope.get("path", "")
        try:
            # Faults apply to what peers and clients call: the public API and the internal routes.
            if path.startswith(("/api/", "/internal/")) and (faults.state.latency_ms or faults.state.error_rate):
                if await faults.state.apply():
                    await send_wrapper({"type": "http.response.start", "status": 503,
                                        "headers": [(b"content-type", b"application/json"),
                                                    (b"content-length", str(len(_FAULT_BODY)).encode())]})
                    await send_wrapper({"type": "http.response.body", "body": _FAULT_BODY})
                    return
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            route_path = getattr(route, "path", None) or "unmatched"
            duration_s = time.perf_counter() - started
            metrics.observe_request(route_path, scope.get("method", ""), status_holder["status"], duration_s)
            if path.startswith(("/api/", "/internal/")) or status_holder["status"] >= 500:
                # One line per API request (public or service-to-service), with the trace ids:
                # follow a checkout across services.
                log.log(logging.WARNING if status_holder["status"] >= 500 else logging.INFO, "request", extra={
                    "fields": {"method": scope.get("method"), "route": route_path, "status": status_holder["status"],
                               "duration_ms": round(duration_s * 1000, 2)}})
            tracing.current.reset(token)


class BodyTooLarge(HTTPException):
    """The request body exceeds the service's limit (``MAX_BODY_BYTES``)."""

    def __init__(self, limit: int):
        super().__init__(413, detail=f"request body larger than {limit} bytes")


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 before they are read and parsed.

    A declared ``Content-Length`` over the limit is refused at once; a body without one (chunked)
    is counted as it arrives and refused as soon as it passes the limit. Raised as an
    ``HTTPException`` so FastAPI's body parsing passes it on instead of turning it into a 400.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self._body = json.dumps({"detail": f"request body larger than {max_bytes} bytes"}).encode()

    async def _reject(self, send) -> None:
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(self._body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": self._body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    return await self._reject(send)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)
