"""`.ci/run`: it exports CI=true for the tests, and stops after three failed installs of Chromium or
of Prometheus and Alertmanager."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def _run(tmp_path: Path, chromium: bool, apt_ok: bool, prometheus: bool = True) -> tuple[subprocess.CompletedProcess, Path]:
    """Run a copy of .ci/run with stand-ins for apt-get, make, sleep (and chromium) on PATH."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", repo / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _stub(bin_dir, "apt-get", f'echo "apt-get $*" >> {log}; exit {0 if apt_ok else 100}')
    _stub(bin_dir, "make", f'echo "make $* CI=$CI" >> {log}')
    _stub(bin_dir, "sleep", f'echo "sleep $*" >> {log}')
    if chromium:
        _stub(bin_dir, "chromium", "exit 0")
    if prometheus:
        _stub(bin_dir, "prometheus", "exit 0")
    for tool in ("bash", "dirname", "env"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    proc = subprocess.run(["bash", str(repo / ".ci" / "run")], env={"PATH": str(bin_dir)},
                          capture_output=True, text=True, timeout=60)
    return proc, log


def test_ci_run_exports_ci_true_to_make_test(tmp_path):
    proc, log = _run(tmp_path, chromium=True, apt_ok=False)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == ["make test CI=true"]


def test_ci_run_fails_after_three_failed_chromium_installs(tmp_path):
    proc, log = _run(tmp_path, chromium=False, apt_ok=False)
    assert proc.returncode != 0
    calls = log.read_text().splitlines()
    assert [c for c in calls if c.startswith("apt-get update")] == ["apt-get update -qq"] * 3
    assert not any(c.startswith("make") for c in calls), "no test run without the browser"
    assert calls.count("sleep 10") == 2
    assert "after 3 attempts" in proc.stderr


def test_ci_run_installs_chromium_then_tests(tmp_path):
    proc, log = _run(tmp_path, chromium=False, apt_ok=True)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert calls[-1] == "make test CI=true"
    assert any("install" in c and "chromium" in c for c in calls)


def _pytest_outcome(tmp_path: Path, ci: str | None) -> str:
    """Run a test that finds a missing piece through `ci_env.skip_or_fail`; its result line."""
    import sys

    test = tmp_path / "test_missing_piece.py"
    test.write_text("from ci_env import skip_or_fail\n\n\ndef test_needs_a_notebook():\n"
                    "    skip_or_fail('no notebook in notebooks/ yet')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO / "tests")
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if ci is not None:
        env["CI"] = ci
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(test)], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    return proc.stdout.strip().splitlines()[-1]


def test_a_missing_piece_skips_locally_and_fails_under_ci(tmp_path):
    assert "1 skipped" in _pytest_outcome(tmp_path, None)
    for value in ("true", "1"):
        assert "1 failed" in _pytest_outcome(tmp_path, value), value


def test_ci_run_fails_after_three_failed_prometheus_installs(tmp_path):
    proc, log = _run(tmp_path, chromium=True, apt_ok=False, prometheus=False)
    assert proc.returncode != 0
    calls = log.read_text().splitlines()
    assert [c for c in calls if c.startswith("apt-get update")] == ["apt-get update -qq"] * 3
    assert not any(c.startswith("make") for c in calls)
    assert "prometheus prometheus-alertmanager could not be installed after 3 attempts" in proc.stderr


def test_ci_run_installs_prometheus_then_tests(tmp_path):
    proc, log = _run(tmp_path, chromium=True, apt_ok=True, prometheus=False)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert any("install" in c and "prometheus-alertmanager" in c for c in calls)
    assert calls[-1] == "make test CI=true"
