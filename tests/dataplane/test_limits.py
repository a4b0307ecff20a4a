"""The inotify budget of Envoys (`cluster.dataplane.limits`): counted from /proc, checked before
`up --mesh`, a scale-up or a canary would start more sidecars than fit."""

from __future__ import annotations

import json
import os

import pytest

from cluster.dataplane import limits


def test_held_counts_this_users_inotify_instances():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    before = limits.instances_of(os.getpid())
    fds = [libc.inotify_init() for _ in range(3)]
    try:
        assert all(fd >= 0 for fd in fds)
        assert limits.instances_of(os.getpid()) == before + 3
        assert limits.held() >= before + 3
    finally:
        for fd in fds:
            os.close(fd)
    assert limits.instances_of(os.getpid()) == before


def test_check_refuses_what_does_not_fit_and_names_the_sysctl(monkeypatch):
    held = limits.held()
    monkeypatch.setattr(limits, "max_instances", lambda: held + 2 * limits.PER_ENVOY + 3)
    assert limits.budget()["envoys"] == 2
    limits.check(2, "up --mesh")
    with pytest.raises(limits.InotifyBudgetError) as err:
        limits.check(3, "up --mesh")
    message = str(err.value)
    assert "\n" not in message and limits.SYSCTL in message and "3 Envoy(s) need 21" in message


def test_up_mesh_refuses_before_starting_anything(tmp_path, monkeypatch):
    from cluster.local import LocalTarget, TargetError

    monkeypatch.setattr(limits, "max_instances", lambda: limits.held() + limits.PER_ENVOY)
    target = LocalTarget(tmp_path / "state")
    with pytest.raises(TargetError, match=limits.SYSCTL.replace(".", r"\.")):
        target.up(mesh=True, port=1, wait=False)
    assert not (tmp_path / "state").exists() and not target.is_up()


def test_a_scale_up_or_canary_that_would_not_fit_is_409(tmp_path, monkeypatch):
    from aiohttp import web

    from cluster.supervisor import Supervisor

    monkeypatch.setattr(limits, "max_instances", lambda: limits.held() + limits.PER_ENVOY)
    sup = Supervisor(tmp_path, 0, mesh=True)
    sup._check_sidecar_budget(1, "scale order to 2")          # one more Envoy fits
    with pytest.raises(web.HTTPConflict) as err:
        sup._check_sidecar_budget(2, "scale order to 3")
    assert limits.SYSCTL in json.loads(err.value.text)["detail"]
    Supervisor(tmp_path, 0, mesh=False)._check_sidecar_budget(5, "scale order to 6")   # no sidecars: no check


def test_doctor_shows_the_budget():
    from pathlib import Path

    from cluster import doctor

    found = {c.name: c for c in doctor.checks(Path("/nonexistent/state"), 1)}
    budget = found["inotify budget"]
    assert not budget.required and limits.SYSCTL in budget.detail and f"of {limits.max_instances()}" in budget.detail
