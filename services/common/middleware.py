"""One ASGI middleware for every service: trace context, version header, faults, RED metrics."""

from __future__ import annotations

import json
import logging
import time

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
            if path.startswith("/api/") and (faults.state.latency_ms or faults.state.error_rate):
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
            if path.startswith("/api/") or status_holder["status"] >= 500:
                # One line per API request, with the trace ids: follow a checkout across services.
                log.log(logging.WARNING if status_holder["status"] >= 500 else logging.INFO, "request", extra={
                    "fields": {"method": scope.get("method"), "route": route_path, "status": status_holder["status"],
                               "duration_ms": round(duration_s * 1000, 2)}})
            tracing.current.reset(token)
