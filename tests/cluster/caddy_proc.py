"""Helpers for tests that run a Caddy of their own or need an upstream that shows what it received."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from cluster.supervisor import caddy_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = json.dumps({"method": self.command, "path": self.path,
                           "headers": [[k, v] for k, v in self.headers.items()]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:   # quiet
        pass


@contextlib.contextmanager
def echo_server():
    """An HTTP server on 127.0.0.1 that answers every request with the headers it received."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def received_headers(resp: httpx.Response) -> dict[str, list[str]]:
    """The echo's answer as lower-case header name -> every value received under that name."""
    out: dict[str, list[str]] = {}
    for name, value in resp.json()["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


@contextlib.contextmanager
def caddy(config: dict, folder: Path, admin_port: int, wait_ports: tuple[int, ...] = ()):
    """Run the real Caddy binary on `config` until the block ends; waits for its listeners."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "caddy.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "XDG_DATA_HOME": str(folder / "data"), "XDG_CONFIG_HOME": str(folder / "config")}
    with open(folder / "caddy.log", "ab") as log:
        proc = subprocess.Popen([caddy_binary(), "run", "--config", str(path)], env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        for port in (admin_port, *wait_ports):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"caddy exited with {proc.returncode}: "
                                       f"{(folder / 'caddy.log').read_text(errors='replace')[-2000:]}")
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"caddy did not listen on {port} within 30 s")
                time.sleep(0.05)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
