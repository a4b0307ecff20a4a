"""CrashLoopBackOff: a replica that dies before it is ever ready is restarted after longer and
longer waits (0.5, 1, 2, 5, 10 s, as the supervisor documents), not in a tight loop."""

from __future__ import annotations

import time

import pytest

from cluster.local import LocalTarget
from cluster.supervisor import RESTART_BACKOFF_S
from conftest import free_port, recorded_pids, stop_everything

pytestmark = pytest.mark.slow

ONLY_AUTH = {s: 0 for s in ("user", "product", "inventory", "order", "payment", "notification")}


def test_a_replica_that_never_gets_ready_backs_off_longer_each_time(tmp_path, monkeypatch):
    # A bad setting makes every auth replica exit at once with a one-line error (exit code 2).
    monkeypatch.setenv("RATE_LIMIT_RPS", "not-a-number")
    target = LocalTarget(tmp_path / "state")
    target.up(port=free_port(), replicas=ONLY_AUTH, wait=False)
    seen: list[tuple[float, int]] = []   # (time, restart count) whenever the count goes up
    try:
        deadline = time.monotonic() + 60
        while (not seen or seen[-1][1] < 5) and time.monotonic() < deadline:
            rep = target.status()["deployments"]["auth"]["replicas"][0]
            if not seen or rep["restarts"] > seen[-1][1]:
                seen.append((time.monotonic(), rep["restarts"]))
            assert not rep["ready"]
            time.sleep(0.05)
        log = (target.state_dir / "logs" / "supervisor.log").read_text(errors="replace")
    finally:
        pids = recorded_pids(target.state_dir)
        left = stop_everything(target, pids)
    assert not left, f"processes left behind after down: {left}"
    counts = [c for _, c in seen]
    assert counts[-1] >= 5 and counts == sorted(set(counts)), seen
    assert "exited with 2" in log
    # Between the k-th and (k+1)-th exit the supervisor waited the k-th back-off, then the
    # replica ran until it failed again: every gap is at least its back-off (a lower bound,
    # so a slow machine cannot fail it), and a tight restart loop could not reach 2 s and 5 s.
    steps = [(a, b) for a, b in zip(seen, seen[1:]) if a[1] >= 1 and b[1] == a[1] + 1]
    gaps = [b[0] - a[0] for a, b in steps]
    schedule = [RESTART_BACKOFF_S[min(a[1] - 1, len(RESTART_BACKOFF_S) - 1)] for a, _ in steps]
    assert len(gaps) >= 3, seen
    for gap, backoff in zip(gaps, schedule):
        assert gap >= backoff * 0.95, (gaps, schedule)
    assert 2.0 in schedule and 5.0 in schedule, (gaps, schedule)
