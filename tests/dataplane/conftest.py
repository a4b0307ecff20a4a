"""Real upstreams and real Envoys on loopback for the data-plane tests.

An upstream is a threaded HTTP server on a port the kernel picked (the socket stays bound, so no
other process can take it); it answers with its name, the path and the headers it received, and
can be told to fail or to be slow. Envoys run from `cluster.dataplane.proxy` in a private tmp
folder, and every one started is stopped in teardown.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cluster.dataplane.proxy import EnvoyProxy


class Upstream:
    """A named HTTP server: GET/POST/DELETE anything → 200 JSON {name, path, method, headers}."""

    def __init__(self, name: str, *, status: int = 200, delay_s: float = 0.0):
        self.name = name
        self.status = status
        self.delay_s = delay_s
        self.hits = 0
        self.routes: dict[str, tuple[int, str]] = {}     # path -> (status, body) served as is
        self.seen: list[dict] = []
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _headers(self) -> dict[str, str]:
                """Headers by lower-case name; repeated ones joined with ',' (as HTTP allows)."""
                out: dict[str, str] = {}
                for k, v in self.headers.items():
                    k = k.lower()
                    out[k] = f"{out[k]},{v}" if k in out else v
                return out

            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                with upstream._lock:
                    upstream.hits += 1
                    upstream.seen.append({"path": self.path, "method": self.command,
                                          "headers": self._headers()})
                if upstream.delay_s:
                    time.sleep(upstream.delay_s)
                if self.path in upstream.routes:
                    status, body = upstream.routes[self.path]
                else:
                    status = upstream.status
                    body = json.dumps({"name": upstream.name, "path": self.path, "method": self.command,
                                       "headers": self._headers()})
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"upstream-{name}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstreams():
    """Factory of upstreams: `upstreams("a", status=503)`; all stopped after the test."""
    made: list[Upstream] = []

    def make(name: str, **kwargs) -> Upstream:
        u = Upstream(name, **kwargs)
        made.append(u)
        return u

    yield make
    for u in made:
        u.stop()


@pytest.fixture
def envoys(tmp_path):
    """Factory of running Envoys: `envoys(plane, "gw")`; all stopped after the test."""
    made: list[EnvoyProxy] = []

    def start(plane, node_id: str = "test") -> EnvoyProxy:
        proxy = EnvoyProxy(tmp_path / f"envoy-{node_id}", node_id)
        made.append(proxy)
        proxy.start(plane)
        return proxy

    yield start
    for p in made:
        p.stop()
    for p in made:
        assert p.process is None or p.process.poll() is not None, f"Envoy {p.node_id} still running"
