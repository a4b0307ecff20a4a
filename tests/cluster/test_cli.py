"""The `cloudmart` CLI: commands on a live CloudMart, and errors as one line with a non-zero exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from services.infra import free_port  # outside the ephemeral range: no outgoing connection takes it


REPO = Path(__file__).resolve().parents[2]


def cli(*args, state_dir, port=None, timeout=180):
    env = {**os.environ, "CLOUDMART_STATE_DIR": str(state_dir)}
    if port:
        env["CLOUDMART_GATEWAY_PORT"] = str(port)
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


def one_line_error(proc):
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.live
def test_status_json_and_text(cloudmart):
    proc = cloudmart.cli("status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["target"] == "local" and status["gateway_url"].endswith(f":{cloudmart.port}")
    assert status["deployments"]["order"]["wanted"] == status["deployments"]["order"]["ready"] == 1
    text = cloudmart.cli("status")
    assert "gateway: http://127.0.0.1:" in text.stdout and "order" in text.stdout


@pytest.mark.live
def test_up_twice_is_harmless(cloudmart):
    before = cloudmart.cm.status()
    proc = cloudmart.cli("up")
    assert proc.returncode == 0, proc.stderr
    assert "already up" in proc.stdout
    after = cloudmart.cm.status()
    assert after["supervisor_pid"] == before["supervisor_pid"]
    assert after["deployments"]["auth"]["replicas"][0]["pid"] == before["deployments"]["auth"]["replicas"][0]["pid"]
    line = one_line_error(cloudmart.cli("up", "--mesh"))
    assert "already up" in line and "cloudmart down" in line


@pytest.mark.live
def test_errors_on_a_live_target(cloudmart):
    assert "unknown deployment 'warehouse'" in one_line_error(cloudmart.cli("scale", "warehouse", "2"))
    assert "negative" in one_line_error(cloudmart.cli("scale", "order", "-1"))
    assert "0..100" in one_line_error(cloudmart.cli("canary", "product", "--weight", "150"))
    assert "rps" in one_line_error(cloudmart.cli("load", "--rps", "0", "--seconds", "1"))
    assert "error-rate" in one_line_error(cloudmart.cli("chaos", "product", "--error-rate", "2"))
    assert "no logs" in one_line_error(cloudmart.cli("logs", "warehouse"))


@pytest.mark.live
def test_scale_chaos_canary_logs_and_load_commands(cloudmart):
    proc = cloudmart.cli("scale", "notification", "2")
    assert proc.returncode == 0 and "2/2 ready" in proc.stdout, proc.stderr
    proc = cloudmart.cli("chaos", "notification", "--kill")
    assert proc.returncode == 0 and "killed notification-" in proc.stdout, proc.stderr
    assert cloudmart.cli("scale", "notification", "1").returncode == 0
    proc = cloudmart.cli("chaos", "product", "--latency-ms", "5")
    assert proc.returncode == 0 and "product-0" in proc.stdout, proc.stderr
    assert cloudmart.cli("chaos", "product", "--reset").returncode == 0
    proc = cloudmart.cli("canary", "product", "--weight", "0")
    assert proc.returncode == 0, proc.stderr
    proc = cloudmart.cli("logs", "product", "-n", "3")
    assert proc.returncode == 0 and proc.stdout.startswith("product-0 | "), proc.stderr
    proc = cloudmart.cli("load", "--scenario", "browse", "--rps", "10", "--seconds", "2", "--json", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["sent"] > 5 and summary["error_rate"] == 0.0


def test_commands_when_not_up(tmp_path):
    state = tmp_path / "nothing"
    assert "not up" in one_line_error(cli("status", state_dir=state))
    assert "not up" in one_line_error(cli("scale", "order", "2", state_dir=state))
    assert "not up" in one_line_error(cli("load", "--rps", "1", "--seconds", "1", state_dir=state))
    proc = cli("down", state_dir=state)
    assert proc.returncode == 0 and "not running" in proc.stdout


def test_up_on_a_taken_port_is_one_line(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        line = one_line_error(cli("up", state_dir=tmp_path / "s", port=port))
    assert f"127.0.0.1:{port} is already taken" in line
    assert not (tmp_path / "s" / "supervisor.json").exists()


def test_bad_replicas_argument(tmp_path):
    line = one_line_error(cli("up", "--replicas", "order=two", state_dir=tmp_path / "s", port=free_port()))
    assert "order=two" in line


ONLY_AUTH = ",".join(f"{s}=0" for s in ("user", "product", "inventory", "order", "payment", "notification"))
# The mesh with two order replicas and a product canary taking traffic: sidecars for each, more
# processes for `down` to find (inventory, payment, notification and user stay at zero).
MESH_CANARY = "user=0,inventory=0,payment=0,notification=0,order=2,product=1,product-canary=1"


def _up(state, port, *args):
    proc = cli("up", *args, state_dir=state, port=port)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auth-only", "mesh-order2-canary"])
def test_up_then_down_leaves_no_process(tmp_path, tools, mode):
    """A CloudMart started and stopped by the CLI, in its own state folder: right after `down`
    returns, no process it started is alive (checked before anything else is killed)."""
    state = tmp_path / "state"
    port = free_port()
    pids = []
    try:
        if mode == "auth-only":
            proc = _up(state, port, "--replicas", ONLY_AUTH)
            assert "auth              1/1" in proc.stdout
            minimum = 6                 # supervisor, gateway, auth-0, postgres, redis, nats
        else:
            proc = _up(state, port, "--mesh", "--replicas", MESH_CANARY)
            status = json.loads(cli("status", "--json", state_dir=state).stdout)
            assert status["mesh"] is True and status["deployments"]["order"]["ready"] == 2
            assert status["deployments"]["product-canary"]["ready"] == 1
            canary = cli("canary", "product", "--weight", "50", state_dir=state)
            assert canary.returncode == 0, canary.stderr
            # 2 order + product + product-canary + auth, each with a sidecar, and the rest
            minimum = 2 * 5 + 5
        pids = tools.recorded_pids(state)
        assert len(tools.alive(pids)) >= minimum, (mode, pids)
    finally:
        down = cli("down", state_dir=state)
        left = tools.left_after(pids, state)
        tools.sweep(pids, state)
    assert down.returncode == 0 and "stopped" in down.stdout, down.stderr
    assert left == [], f"{mode}: processes left behind by down: {left}"
    purge = cli("down", "--purge", state_dir=state)
    assert purge.returncode == 0 and not state.exists()


@pytest.mark.slow
def test_down_after_the_supervisor_was_killed_leaves_no_process(tmp_path, tools):
    """The supervisor dies hard (SIGKILL: no clean-up of its own); `cloudmart down` still stops
    the gateway, the replicas and the servers it had started."""
    state = tmp_path / "state"
    pids = []
    try:
        _up(state, free_port(), "--replicas", ONLY_AUTH)
        raw = json.loads((state / "supervisor.json").read_text())
        pids = tools.recorded_pids(state)
        assert len(tools.alive(pids)) >= 6
        os.kill(raw["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while tools.alive([raw["pid"]]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tools.alive([raw["pid"]]) == [], "the supervisor is dead"
        assert len(tools.alive(pids)) >= 5, "the supervisor's children outlive it until down"
    finally:
        down = cli("down", state_dir=state)
        left = tools.left_after(pids, state)
        tools.sweep(pids, state)
    assert down.returncode == 0, down.stderr
    assert left == [], f"processes left behind by down after a killed supervisor: {left}"
    assert "not running" in cli("down", state_dir=state).stdout


def test_unknown_subcommand_is_one_line_with_exit_2(tmp_path):
    proc = cli("frobnicate", state_dir=tmp_path / "s")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "frobnicate" in line and "invalid choice" in line and "up" in line
    assert not (tmp_path / "s").exists(), "an unknown command starts nothing"
