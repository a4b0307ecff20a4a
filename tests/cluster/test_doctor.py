"""`cloudmart doctor` says whether CloudMart can run here, and what to do when it cannot."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.infra import free_port

REPO = Path(__file__).resolve().parents[2]


def _doctor(tmp_path: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "CLOUDMART_STATE_DIR": str(tmp_path / "state"), **env}
    return subprocess.run([sys.executable, "-m", "cluster.cli", "doctor", *args], capture_output=True, text=True,
                          env=full, cwd=REPO, timeout=timeout)


def _check_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(("ok ", "FAIL", "warn"))]


def test_doctor_passes_where_cloudmart_can_run(tmp_path):
    done = _doctor(tmp_path, CLOUDMART_GATEWAY_PORT=str(free_port()))
    assert done.returncode == 0, done.stdout + done.stderr
    names = [line.split()[1] for line in _check_lines(done.stdout)]
    assert {"python", "memory", "disk", "postgresql", "redis-server", "nats-server", "gateway", "state",
            "chromium", "prometheus"} <= set(names)
    assert done.stdout.rstrip().splitlines()[-1].startswith("verdict: READY") or \
        "verdict: READY" in done.stdout, done.stdout
    assert not (tmp_path / "state").exists(), "doctor starts and creates nothing"


def test_doctor_fails_and_names_the_fix_for_a_taken_gateway_port(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        port = sock.getsockname()[1]
        done = _doctor(tmp_path, CLOUDMART_GATEWAY_PORT=str(port))
    assert done.returncode == 1
    line = next(ln for ln in done.stdout.splitlines() if "gateway port" in ln)
    assert line.startswith("FAIL") and str(port) in line
    verdict = done.stdout[done.stdout.index("verdict:"):]
    assert verdict.startswith("verdict: NOT READY, 1 problem(s)"), verdict
    fix = next(ln for ln in verdict.splitlines() if "1. gateway port" in ln)
    suggested = int(fix.rsplit("CLOUDMART_GATEWAY_PORT=", 1)[1])
    assert suggested != port and 1024 <= suggested <= 65535


def test_doctor_live_does_not_start_on_a_taken_port_and_json_says_why(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        done = _doctor(tmp_path, "--live", "--json", CLOUDMART_GATEWAY_PORT=str(sock.getsockname()[1]))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    by_name = {c["name"]: c for c in report["checks"]}
    assert report["ready"] is False
    assert by_name["cloudmart starts"]["ok"] is False and "gateway port" in by_name["cloudmart starts"]["detail"]
    assert "CLOUDMART_GATEWAY_PORT" in by_name["gateway port"]["fix"]
    assert not (tmp_path / "state" / "supervisor.json").exists()


def test_doctor_live_starts_cloudmart_answers_the_first_cell_and_stops_it(tmp_path):
    done = _doctor(tmp_path, "--live", timeout=240, CLOUDMART_GATEWAY_PORT=str(free_port()))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {ln.split()[1]: ln for ln in _check_lines(done.stdout)}
    assert lines["cloudmart"].startswith("ok") and "ready in" in lines["cloudmart"]
    first = next(ln for ln in _check_lines(done.stdout) if "first live cell" in ln)
    assert "HTTP 200" in first and " 0 products" not in first
    assert not (tmp_path / "state" / "supervisor.json").exists(), "doctor stops the CloudMart it started"


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL changes user only under root")
def test_doctor_fails_when_postgres_cannot_run_as_root(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    done = _doctor(tmp_path, CLOUDMART_GATEWAY_PORT=str(free_port()), CLOUDMART_PG_HOME=str(closed / "pg"))
    assert done.returncode == 1
    line = next(ln for ln in done.stdout.splitlines() if "postgresql as this user" in ln)
    assert line.startswith("FAIL") and "normal user" in line
