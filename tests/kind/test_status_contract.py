"""One status contract for both targets: the handle's methods run unchanged on the kind target's
status (an in-memory Kubernetes API built from the rendered manifests) and on the local target's
real status (the supervisor's own `status()`, and a live local CloudMart)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cluster import kind_target
from cluster.handle import STATUS_KEYS, CloudMart, status_problems
from cluster.local import LocalTarget, TargetError
from fake_kube import FakeKube


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def kind(rendered, tmp_path, monkeypatch):
    """A KindCluster handle (Istio gateway) on the in-memory API, and that API."""
    monkeypatch.setenv("CLOUDMART_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CLOUDMART_GATEWAY", "istio")
    api = FakeKube(rendered["istio"])
    target = kind_target.KindTarget(clients=api, port=free_port())
    return kind_target.KindCluster(user=None, target=target), api


def test_kind_status_keeps_the_contract(kind):
    cm, _ = kind
    status = cm.status()
    assert status_problems(status, cm.STATUS_EXTRA_KEYS, cm.REPLICA_EXTRA_KEYS) == []
    assert set(STATUS_KEYS) <= set(status)
    assert status["ready"] and status["routed"] and status["mesh"]
    assert status["deployments"]["order"]["service"] == "order"
    assert status["deployments"]["product-canary"]["service"] == "product"


def test_the_contract_names_what_a_status_lacks(kind):
    """The defect this guards against: kind's status had no `routed`, so `scale()` raised KeyError."""
    cm, _ = kind
    status = cm.status()
    broken = {k: v for k, v in status.items() if k != "routed"}
    assert status_problems(broken) == ["status has no 'routed'"]
    cm.target.status = lambda: broken
    with pytest.raises(TargetError, match="routed"):
        cm.scale("order", 2)


def test_kind_handle_scales_and_waits_until_routed(kind):
    cm, api = kind
    result = cm.scale("order", 3, timeout_s=10)
    assert (result["wanted"], result["ready"], len(result["replicas"])) == (3, 3, 3)
    hpa = api.objects[("HorizontalPodAutoscaler", "order")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 3)     # pinned: load does not rescale it
    with pytest.raises(ValueError, match="replicas"):
        cm.scale("order", -1)


def test_kind_handle_kills_shifts_canary_weight_and_injects_mesh_faults(kind):
    cm, api = kind
    victim = cm.kill("payment")["killed"]
    assert victim not in {r["pod"] for r in cm.status()["deployments"]["payment"]["replicas"]}
    cm.canary("product", 25)
    route = api.objects[("HTTPRoute", "product")]
    weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][1]["backendRefs"]}
    assert weights == {"product": 75, "product-canary": 25}
    assert api.objects[("Deployment", "product-canary")]["spec"]["replicas"] == 1
    fault = cm.mesh_fault("inventory", latency_ms=200, error_rate=0.1)
    assert fault["abort"]["percentage"]["value"] == 10.0


def test_kind_handle_injects_app_faults_in_every_ready_pod(kind, monkeypatch):
    cm, _ = kind
    calls = []

    def exec_http(pod, method, path, body=None, headers=None, container=None):
        calls.append((pod, method, path, body, container))
        return 200, '{"latency_ms": 50}'

    monkeypatch.setattr(cm.target, "exec_http", exec_http)
    monkeypatch.setattr(cm, "_admin_headers", lambda: {"Authorization": "Bearer x"})
    cm.scale("order", 2, timeout_s=10)
    out = cm.inject("order", latency_ms=50)
    assert len(out) == 2 and {c[4] for c in calls} == {"order"} and {c[2] for c in calls} == {"/admin/fault"}


def test_local_supervisor_status_keeps_the_contract(tmp_path):
    """The supervisor's real `status()` (before it starts anything) has every key of the contract."""
    from cluster.supervisor import Supervisor

    status = Supervisor(tmp_path, free_port()).status()
    assert status_problems(status, CloudMart.STATUS_EXTRA_KEYS, CloudMart.REPLICA_EXTRA_KEYS) == []


@pytest.mark.live
@pytest.mark.slow
def test_local_handle_keeps_the_contract_live(tmp_path: Path):
    """A real local CloudMart: the same checks and `scale()` through the same handle code."""
    target = LocalTarget(tmp_path / "state")
    try:
        target.up(port=free_port())
        cm = CloudMart(target, user=None)
        status = cm.status()
        assert status_problems(status, cm.STATUS_EXTRA_KEYS, cm.REPLICA_EXTRA_KEYS) == []
        assert status["deployments"]["order"]["replicas"], "a running replica to check the replica keys"
        result = cm.scale("order", 2, timeout_s=120)
        assert result["ready"] == 2 and cm.status()["routed"]
    finally:
        target.down(timeout_s=60)
