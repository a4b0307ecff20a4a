"""`cloudmart doctor` says whether CloudMart can run here, and what to do when it cannot."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.infra import free_port

REPO = Path(__file__).resolve().parents[2]


def _doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "CLOUDMART_STATE_DIR": str(tmp_path / "state"), **env}
    return subprocess.run([sys.executable, "-m", "cluster.cli", "doctor"], capture_output=True, text=True,
                          env=full, cwd=REPO, timeout=60)


def test_doctor_passes_where_cloudmart_can_run(tmp_path):
    done = _doctor(tmp_path, CLOUDMART_GATEWAY_PORT=str(free_port()))
    assert done.returncode == 0, done.stdout + done.stderr
    names = [line.split()[1] for line in done.stdout.splitlines()]
    assert {"postgresql", "redis-server", "nats-server", "gateway", "state"} <= set(names)
    assert not (tmp_path / "state").exists(), "doctor starts and creates nothing"


def test_doctor_fails_and_names_the_fix_for_a_taken_gateway_port(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        done = _doctor(tmp_path, CLOUDMART_GATEWAY_PORT=str(sock.getsockname()[1]))
    assert done.returncode == 1
    line = next(ln for ln in done.stdout.splitlines() if "gateway port" in ln)
    assert line.startswith("FAIL") and "CLOUDMART_GATEWAY_PORT" in line


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL changes user only under root")
def test_doctor_fails_when_postgres_cannot_run_as_root(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    done = _doctor(tmp_path, CLOUDMART_GATEWAY_PORT=str(free_port()), CLOUDMART_PG_HOME=str(closed / "pg"))
    assert done.returncode == 1
    line = next(ln for ln in done.stdout.splitlines() if "postgresql as this user" in ln)
    assert line.startswith("FAIL") and "normal user" in line
