"""A webhook receiver on 127.0.0.1: records every JSON POST (budget actions, Alertmanager's
webhook_configs). Runs in a thread of the caller's process.

    with WebhookReceiver() as hook:
        ... budget action webhooks=[hook.url] ...
        hook.wait_for(1, timeout_s=30); hook.received[0]["body"]
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """Collects POSTed JSON bodies with their path and arrival time in `received`."""

    def __init__(self, port: int = 0):
        self.received: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = raw.decode(errors="replace")
                with receiver._lock:
                    receiver.received.append({"path": self.path, "t": time.time(), "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, n: int, timeout_s: float = 30.0) -> list[dict]:
        """Wait until `n` posts arrived; a TimeoutError names how many did."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= n:
                    return list(self.received)
            time.sleep(0.05)
        raise TimeoutError(f"{len(self.received)} of {n} webhook posts arrived within {timeout_s:g} s")
