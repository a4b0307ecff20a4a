"""Helpers for tests that need a free port or an upstream that shows what it received."""

from __future__ import annotations

import contextlib
import socket

import httpx

from local_http import JSONHandler, serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Echo(JSONHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
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
