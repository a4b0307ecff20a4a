"""Fixtures for the local target: one real CloudMart per session (temp state folder, free port).

Every process a fixture starts is stopped in teardown by `down`, also when a test fails; the
teardown then checks that `down` left none of the recorded processes (nor any process naming the
state folder) alive, and only after that check kills any survivor.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cluster.handle import CloudMart
from cluster.local import LocalTarget
from cluster.supervisor import STATE_FILE
from services.infra import free_port  # outside the ephemeral range: no outgoing connection takes it

REPO = Path(__file__).resolve().parents[2]


def recorded_pids(state_dir: Path) -> list[int]:
    """Every pid a running CloudMart recorded: supervisor, gateway, replicas, sidecars, infra."""
    pids = []
    try:
        raw = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        raw = {}
    status = raw.get("status") or {}
    pids += [raw.get("pid"), status.get("gateway_pid")]
    for dep in (status.get("deployments") or {}).values():
        for rep in dep["replicas"]:
            pids += [rep.get("pid"), rep.get("sidecar_pid")]
    for info in (status.get("infra") or {}).values():
        pids.append(info.get("pid"))
    return [p for p in pids if p]


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            pass
    return out


def processes_under(state_dir: Path) -> list[psutil.Process]:
    """Processes whose command line mentions the state folder (servers started for it)."""
    found = []
    needle = str(state_dir)
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except psutil.Error:
            continue
        if proc.pid == os.getpid():
            continue
        if needle in cmd or env.get("CLOUDMART_STATE_DIR") == needle:
            found.append(proc)
    return found


def left_after(pids: list[int], state_dir: Path, grace_s: float = 5.0) -> list[int]:
    """Recorded processes still alive, and processes naming the state folder, `grace_s` after
    `down` returned (a process that `down` stopped is gone well within that; one it forgot is not)."""
    deadline = time.monotonic() + grace_s
    while True:
        left = sorted(set(alive(pids)) | {p.pid for p in processes_under(state_dir)})
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def sweep(pids: list[int], state_dir: Path) -> None:
    """SIGKILL whatever is left, so that a failing test leaves no process behind (never before
    the check: a sweep first would hide what `down` forgot)."""
    for pid in alive(pids) + [p.pid for p in processes_under(state_dir)]:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def stop_everything(target: LocalTarget, pids: list[int]) -> list[int]:
    """`down`, then note what it left behind, then kill that; returns the pids `down` left."""
    left: list[int] = []
    try:
        target.down(timeout_s=30)
    finally:
        pids = sorted(set(pids + recorded_pids(target.state_dir)))
        left = left_after(pids, target.state_dir)
        sweep(pids, target.state_dir)
    return left


class Running:
    """A started CloudMart for tests: the target, its handle as alice, and its state folder."""

    def __init__(self, target: LocalTarget, port: int):
        self.target = target
        self.port = port
        self.state_dir = target.state_dir
        self.cm = CloudMart(target, user="alice")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "CLOUDMART_STATE_DIR": str(self.state_dir), "CLOUDMART_GATEWAY_PORT": str(self.port)}
        return subprocess.run([sys.executable, "-m", "cluster.cli", *args], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=REPO)


def start(tmp: Path, **up_kw) -> tuple[Running, list[int]]:
    port = free_port()
    target = LocalTarget(tmp / "state")
    try:
        target.up(port=port, **up_kw)
    except BaseException:
        stop_everything(target, recorded_pids(target.state_dir))
        raise
    return Running(target, port), recorded_pids(target.state_dir)


@pytest.fixture(scope="session")
def cloudmart(tmp_path_factory):
    """One real local CloudMart for the session (microservices, no mesh, one replica each)."""
    running, pids = start(tmp_path_factory.mktemp("cloudmart"))
    try:
        yield running
    finally:
        pids = sorted(set(pids + recorded_pids(running.state_dir)))
        left = stop_everything(running.target, pids)
        assert not left, f"processes left behind after down: {left}"


@contextlib.contextmanager
def started(tmp: Path, **up_kw):
    """A CloudMart of its own (state folder, port), stopped on exit with nothing left behind."""
    running, pids = start(tmp, **up_kw)
    try:
        yield running
    finally:
        pids = sorted(set(pids + recorded_pids(running.state_dir)))
        left = stop_everything(running.target, pids)
        assert not left, f"processes left behind after down: {left}"


@pytest.fixture(scope="session")
def start_cloudmart():
    """`with start_cloudmart(tmp, mesh=True) as running:` — for modules that need another mode."""
    return started


@pytest.fixture(scope="module")
def mesh_cloudmart(tmp_path_factory):
    """A CloudMart with the mesh on (its own state folder and ports)."""
    with started(tmp_path_factory.mktemp("mesh"), mesh=True) as running:
        yield running


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    """The `wait_for(predicate, timeout_s)` helper."""
    return wait_for


@pytest.fixture
def tools():
    """Process helpers for tests that start their own CloudMart."""
    import types

    return types.SimpleNamespace(repo=REPO, alive=alive, free_port=free_port, processes_under=processes_under,
                                 recorded_pids=recorded_pids, left_after=left_after, sweep=sweep)
