"""W3C Trace Context: parse, create and propagate ``traceparent`` through a context variable."""

from __future__ import annotations

import contextvars
import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

#: (trace_id, span_id) of the work in progress, or None outside any request/event.
current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("trace", default=None)


def new_span(traceparent: str | None = None) -> tuple[str, str]:
    """Start a span: child of ``traceparent`` when it is valid, else the root of a new trace."""
    match = _TRACEPARENT.match((traceparent or "").strip().lower())
    trace_id = match.group(1) if match and set(match.group(1)) != {"0"} else secrets.token_hex(16)
    return trace_id, secrets.token_hex(8)


def start(traceparent: str | None = None) -> contextvars.Token:
    """Make a new span current (child of ``traceparent``); returns the token to reset."""
    return current.set(new_span(traceparent))


def traceparent() -> str:
    """The ``traceparent`` header value for an outgoing call or event from the current span."""
    span = current.get()
    if span is None:
        span = new_span()
    return f"00-{span[0]}-{span[1]}-01"
