"""A listener that loses its port between choosing and binding it moves to a new port.

The collision is made deterministic: the test holds a listening socket on the port the supervisor
(or the infrastructure) is about to give a server, so the server's bind fails every time it tries
that port. Before the fix, a replica crash-looped on the taken port until `up` gave up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path

import httpx
import pytest

from cluster import topology
from cluster.supervisor import Supervisor
from services import infra
from services.infra import free_port, port_is_free


@pytest.fixture
def held_port():
    """A port that another process listens on for the whole test (as a thief would)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", free_port()))
    sock.listen()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_free_port_avoids_the_ephemeral_range_and_never_repeats():
    low, high = infra.ephemeral_port_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert not [p for p in ports if low <= p <= high], "a port from the range outgoing connections use"
    assert all(port_is_free(p) for p in ports[:20])


def _only(deployment: str) -> dict[str, int]:
    """Replica counts that run one replica of `deployment` and nothing else."""
    names = topology.load(topology.BASE_DIR).deployments
    return {name: (1 if name == deployment else 0) for name in names}


class _LosingSupervisor(Supervisor):
    """A supervisor whose first choice of one port is a port another process already holds."""

    def __init__(self, *args, held: int, which: str, **kw):
        super().__init__(*args, **kw)
        self.held, self.which, self.used = held, which, False

    def _new_replica(self, dep, index):
        rep = super()._new_replica(dep, index)
        if dep.name == "auth" and not self.used:
            self.used = True
            if self.which == "app":
                rep.app_port = self.held
            else:
                rep.inbound_port = self.held
        return rep


async def _run_until_ready(sup: Supervisor, timeout_s: float = 90.0) -> dict:
    await sup.start()
    tasks = [asyncio.create_task(sup._readiness_loop()), asyncio.create_task(sup._reconfigure_loop())]
    try:
        deadline = time.monotonic() + timeout_s
        while not sup.status()["ready"]:
            assert time.monotonic() < deadline, f"not ready after {timeout_s} s: {json.dumps(sup.status())[:800]}"
            await asyncio.sleep(0.2)
        status = sup.status()
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"http://127.0.0.1:{sup.gateway_port}/api/auth/.well-known/jwks.json")
        return {"status": status, "jwks": resp.status_code}
    finally:
        for task in tasks:
            task.cancel()
        await sup.shutdown()


@pytest.mark.parametrize("which", ["app", "sidecar"])
def test_a_listener_whose_port_is_taken_starts_on_a_new_port(tmp_path: Path, held_port: int, which: str, caplog):
    caplog.set_level(logging.WARNING, logger="cloudmart.supervisor")
    sup = _LosingSupervisor(tmp_path / "state", free_port(), mesh=(which == "sidecar"),
                            replicas=_only("auth"), held=held_port, which=which)
    result = asyncio.run(_run_until_ready(sup))
    rep = result["status"]["deployments"]["auth"]["replicas"][0]
    assert rep["ready"] and rep["state"] == "ready"
    if which == "app":
        assert rep["port"] != held_port
        assert rep["restarts"] == 1, "one failed bind, then a start on a new port: no crash loop"
        assert f"could not bind 127.0.0.1:{held_port}" in rep["last_reason"]
        assert any("could not bind 127.0.0.1:%d" % held_port in r.getMessage() for r in caplog.records)
    else:
        assert rep["sidecar_inbound_port"] != held_port
        assert any(f"inbound port 127.0.0.1:{held_port} is held by another process" in r.getMessage()
                   for r in caplog.records)
    # The endpoints followed the move: the gateway routes to the replica on its new port.
    assert result["jwks"] == 200


def test_infrastructure_server_whose_port_is_taken_starts_on_a_new_port(tmp_path: Path, held_port: int,
                                                                         monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="cloudmart.infra")
    real_start = infra._start_redis
    tried: list[int] = []

    def start_redis(root, previous, port, *args):
        # Its first port is the held one, as if another process had bound it a moment before.
        tried.append(held_port if not tried else port)
        return real_start(root, previous, tried[-1], *args)

    monkeypatch.setattr(infra, "_start_redis", start_redis)
    state = tmp_path / "state"
    started = infra.start_infra(state)
    try:
        redis = started.servers["redis"]
        assert tried[0] == held_port and len(tried) == 2, tried
        assert redis["port"] != held_port
        assert infra.listens_on(redis["pid"], redis["port"])
        assert any(f"redis-server could not bind 127.0.0.1:{held_port}" in r.getMessage() for r in caplog.records)
    finally:
        started.stop()
        infra.purge_postgres(state)
