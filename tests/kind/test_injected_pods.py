"""Gatekeeper's policies judge the pods Istio's injector returns, not the pods the manifests state.

Admission runs the mutating webhooks (Istio's injector) before the validating ones (Gatekeeper), so
every pod of the meshed namespace is checked with `istio-init` and `istio-proxy` in it, with the
resources the project's istiod values give them. A policy failure here is a pod the ReplicaSet can
never create: after the first rollout no kill, scale, HPA step or canary would get a pod.
"""

from __future__ import annotations

import copy

import pytest

import istio_injection
from cluster.policies import gatekeeper


@pytest.fixture(scope="module")
def policies():
    return gatekeeper.load_policies()


@pytest.fixture(scope="module")
def values():
    return istio_injection.load_values()


def test_every_meshed_workload_is_injected(rendered, values):
    pods = istio_injection.injected_pods(rendered["istio-all"], values)
    names = {p["metadata"]["name"] for p in pods}
    assert {"auth", "order", "product-canary", "postgres", "nats", "redis", "mongo"} <= names
    for pod in pods:
        assert [c["name"] for c in pod["spec"]["initContainers"]][:1] == ["istio-init"]
        assert "istio-proxy" in [c["name"] for c in pod["spec"]["containers"]]


def test_injected_pods_pass_every_policy(rendered, policies, values):
    pods = istio_injection.injected_pods(rendered["istio-all"], values)
    assert len(pods) >= 12
    assert [str(v) for v in policies.evaluate(pods)] == []


def test_init_and_proxy_resources_are_set_in_the_istiod_values(values):
    for key in ("proxy", "proxy_init"):
        resources = values["global"][key]["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) == {"cpu", "memory"}, (key, kind)


def test_without_proxy_init_resources_every_pod_is_denied(rendered, policies, values):
    """The defect this guards against: the chart's default leaves `istio-init` with `resources: {}`."""
    broken = copy.deepcopy(values)
    broken["global"].pop("proxy_init", None)
    pods = istio_injection.injected_pods(rendered["istio-all"], broken)
    denied = {v.name for v in policies.evaluate(pods) if "<istio-init>" in v.msg and "no cpu limit" in v.msg}
    assert denied == {p["metadata"]["name"] for p in pods}


def test_metrics_merging_points_every_injected_pod_at_15020(rendered, values):
    for pod in istio_injection.injected_pods(rendered["istio-all"], values):
        annotations = pod["metadata"]["annotations"]
        assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", "15020")
