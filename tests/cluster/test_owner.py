"""A CloudMart started for an owner process (`cloudmart up --owner-pid`, what a notebook does for
its second CloudMart) stops everything once the owner dies, also by SIGKILL (a kernel killed by
the user or by an out-of-memory kill, where no atexit handler runs)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from cluster.local import LocalTarget, TargetError
from cluster.supervisor import STATE_FILE, owner_alive, watch_owner
from services.infra import free_port

from conftest import REPO, left_after, recorded_pids, sweep


def test_owner_alive_tells_a_live_owner_from_a_dead_one_and_a_reused_pid():
    import psutil

    me = psutil.Process()
    assert owner_alive(me.pid, me.create_time())
    assert not owner_alive(me.pid, me.create_time() - 3600)   # the same pid, another process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not owner_alive(child.pid, None)


def test_watch_owner_sets_stopping_when_the_owner_exits():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])

    async def run():
        stopping = asyncio.Event()
        task = asyncio.create_task(watch_owner(child.pid, stopping, interval_s=0.05))
        await asyncio.sleep(0.3)
        assert not stopping.is_set()       # the owner lives: nothing happens
        child.kill()
        child.wait()
        await asyncio.wait_for(stopping.wait(), 5)
        await task

    asyncio.run(run())


def test_an_owner_pid_that_is_not_a_pid_is_refused(tmp_path):
    with pytest.raises(TargetError, match="owner_pid"):
        LocalTarget(tmp_path / "state").up(port=free_port(), owner_pid=-3)


def test_killing_the_owner_stops_the_cloudmart_it_started(tmp_path):
    state = tmp_path / "state"
    port = free_port()
    env = {**os.environ, "CLOUDMART_STATE_DIR": str(state), "CLOUDMART_GATEWAY_PORT": str(port)}
    # a kernel-like process: starts a CloudMart it owns, then waits to be killed
    kernel = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys, time\n"
        "subprocess.run([sys.executable, '-m', 'cluster.cli', 'up', '--owner-pid', str(os.getpid())], check=True, stdout=subprocess.DEVNULL)\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n")], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert kernel.stdout.readline().strip() == "up"
        pids = recorded_pids(state)
        assert len(pids) > 5, pids          # supervisor, gateway, replicas, infrastructure
        kernel.send_signal(signal.SIGKILL)
        kernel.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (state / STATE_FILE).exists():
            time.sleep(0.2)
        left = left_after(pids, state, grace_s=10)
        assert not left, f"still running after the owner was killed: {left}"
        assert "owner process" in (state / "logs" / "supervisor.log").read_text()
    finally:
        if kernel.poll() is None:
            kernel.kill()
        subprocess.run([sys.executable, "-m", "cluster.cli", "down"], cwd=REPO, env=env, capture_output=True,
                       timeout=120)
        sweep(pids + recorded_pids(state), state)
