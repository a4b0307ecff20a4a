"""Prometheus metrics: RED per route (rate, errors, duration) and saga step counters.

``/metrics`` is for the scraper: it needs ``Authorization: Bearer <scrape token>``, the token in
``<state dir>/metrics/scrape-token`` (created once, readable by CloudMart's own user only), unless
``METRICS_AUTH=none`` (in a cluster, where a NetworkPolicy admits only Prometheus to the port).
"""

from __future__ import annotations

import hmac
import os
import secrets
import uuid
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled.", ["service", "route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "HTTP request duration in seconds.", ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SAGA_STEPS = Counter(
    "saga_steps_total", "Checkout saga steps by outcome.", ["service", "step", "outcome"]
)
EVENTS_CONSUMED = Counter(
    "events_consumed_total", "Events handled by a consumer.", ["service", "subject", "outcome"]
)
EVENTS_PUBLISHED = Counter("events_published_total", "Events published from the outbox.", ["service", "subject"])
AUTHZ_DECISIONS = Counter(
    "authz_decisions_total", "Decisions of this service's authentication and authorization checks.",
    ["service", "decision", "reason"],
)

_service = {"name": ""}


def set_service(name: str) -> None:
    """Name the service once; every metric this process records carries it."""
    _service["name"] = name


def saga_step(step: str, outcome: str) -> None:
    """Count one saga step (e.g. ``step="reserve_stock", outcome="ok"``)."""
    SAGA_STEPS.labels(_service["name"], step, outcome).inc()


def event_consumed(subject: str, outcome: str) -> None:
    EVENTS_CONSUMED.labels(_service["name"], subject, outcome).inc()


def event_published(subject: str) -> None:
    EVENTS_PUBLISHED.labels(_service["name"], subject).inc()


def authz_decision(decision: str, reason: str) -> None:
    """Count one check's outcome: ``decision`` "allow" or "deny", ``reason`` from a fixed set
    (``token``, ``anonymous``, ``invalid_token``, ``unauthenticated``, ``forbidden``,
    ``insufficient_scope``, ``rate_limited``), so the label's values stay bounded."""
    AUTHZ_DECISIONS.labels(_service["name"], decision, reason).inc()


def observe_request(route: str, method: str, status: int, duration_s: float) -> None:
    name = _service["name"]
    HTTP_REQUESTS.labels(name, route, method, str(status)).inc()
    HTTP_DURATION.labels(name, route, method).observe(duration_s)


def exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of this process and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


def scrape_token_path(state_dir) -> Path:
    return Path(state_dir) / "metrics" / "scrape-token"


def load_or_create_scrape_token(state_dir) -> str:
    """The scrape token of this state folder, created atomically by the first process that needs
    it (a temp file hard-linked into place; a replica that loses the race reads the winner's)."""
    path = scrape_token_path(state_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def scrape_allowed(expected_token: str | None, authorization: str | None) -> bool:
    """True if metrics are open (no token expected) or ``authorization`` carries the token."""
    if expected_token is None:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), expected_token.encode())
