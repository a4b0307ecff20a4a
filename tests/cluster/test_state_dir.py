"""One user has one CloudMart: the state folder does not depend on the working directory.

A notebook kernel runs in the notebook's folder; JupyterLab, VS Code or a JupyterHub may start it
without `CLOUDMART_STATE_DIR`. It must find the CloudMart that `cloudmart up` started at the
checkout's root, not start a second one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.local import LocalTarget, default_state_dir
from services.infra import free_port

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks" / "day1-microservices"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CLOUDMART_STATE_DIR"}
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_default_state_folder_is_the_same_from_every_directory(tmp_path: Path):
    code = "from cluster.local import state_dir; print(state_dir())"
    seen = {_run([sys.executable, "-c", code], cwd, _env(PYTHONPATH=str(REPO))).stdout.strip()
            for cwd in (REPO, NOTEBOOK_DIR, tmp_path, Path("/"))}
    assert seen == {str(REPO / ".cloudmart")}
    # The variable still wins.
    forced = _run([sys.executable, "-c", code], tmp_path,
                  _env(PYTHONPATH=str(REPO), CLOUDMART_STATE_DIR=str(tmp_path / "mine"))).stdout.strip()
    assert forced == str(tmp_path / "mine")


def test_a_kernel_in_the_notebook_folder_connects_to_the_cloudmart_started_at_the_root(tmp_path: Path):
    target = LocalTarget(default_state_dir())
    if target.is_up():
        pytest.skip("a CloudMart is already up in the checkout's state folder (make lab?); not touching it")
    created = not target.state_dir.exists()
    port = free_port()
    env = _env(CLOUDMART_GATEWAY_PORT=str(port))
    cli = [sys.executable, "-m", "cluster.cli"]
    up = _run([*cli, "up"], REPO, env)
    try:
        assert up.returncode == 0, up.stderr
        started = json.loads(_run([*cli, "status", "--json"], REPO, env).stdout)
        # A notebook kernel: its working directory is the notebook's folder, no CLOUDMART_STATE_DIR.
        kernel = _run([sys.executable, "-c", "from cluster import connect; import json; cm = connect(); "
                       "print(json.dumps({'status': cm.target.status(), 'products': cm.get('/api/products').status_code}))"],
                      NOTEBOOK_DIR, env)
        assert kernel.returncode == 0, kernel.stderr[-2000:]
        seen = json.loads(kernel.stdout.strip().splitlines()[-1])
        assert seen["status"]["supervisor_pid"] == started["supervisor_pid"], "a second CloudMart was started"
        assert seen["status"]["state_dir"] == str(REPO / ".cloudmart")
        assert seen["products"] == 200
        assert not (NOTEBOOK_DIR / ".cloudmart").exists()
        # status and down work from anywhere.
        elsewhere = json.loads(_run([*cli, "status", "--json"], tmp_path, env).stdout)
        assert elsewhere["supervisor_pid"] == started["supervisor_pid"]
    finally:
        down = _run([*cli, "down", *(["--purge"] if created else [])], tmp_path, env)
    assert down.returncode == 0, down.stderr
    assert not target.is_up()
