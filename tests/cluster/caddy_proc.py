"""Helpers for tests that run a Caddy of their own or need an upstream that shows what it received."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from cluster.supervisor import caddy_binary
from local_http import JSONHandler, serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Echo(JSONHandler):
    def _answer(self) -> None:
        self.send_json({"method": self.command, "path": self.path,
                        "headers": [[k, v] for k, v in self.headers.items()]})

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@contextlib.contextmanager
def echo_server():
    """An HTTP server on 127.0.0.1 that answers every request with the headers it received."""
    with serve(_Echo) as url:
        yield url.removeprefix("http://")


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
