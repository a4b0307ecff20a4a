"""JSON logs to stderr, one object per line, carrying the service, replica and trace ids."""

from __future__ import annotations

import json
import logging
import sys
import time

from services.common import tracing

_configured = {"service": "", "replica": ""}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: ts, level, service, replica, msg, trace_id, span_id."""

    def format(self, record: logging.LogRecord) -> str:
        span = tracing.current.get()
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": _configured["service"],
            "replica": _configured["replica"],
            "logger": record.name,
            "msg": record.getMessage(),
            "trace_id": span[0] if span else None,
            "span_id": span[1] if span else None,
        }
        extra = getattr(record, "fields", None)
        if extra:
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(service: str, replica: str, level: str = "INFO") -> None:
    """Route the root logger (and uvicorn's) to stderr as JSON lines."""
    _configured.update(service=service, replica=replica)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Access logs are replaced by the metrics middleware's own request log at DEBUG.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpcore", "nats", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    """A logger; pass structured fields with ``extra={"fields": {...}}``."""
    return logging.getLogger(name)
