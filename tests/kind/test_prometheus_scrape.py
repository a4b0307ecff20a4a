"""What Prometheus would scrape on the cluster, and with which labels (prometheus_model), offline.

- OpenCost exports series that carry their own `namespace`, `pod` and `container` labels (the
  workload being costed). A job that sets `namespace`/`pod` target labels without `honor_labels:
  true` overwrites them with OpenCost's own pod and moves the real ones to `exported_*`, so the
  per-namespace and per-workload allocation of the Day 5 lab would be wrong. OpenCost's Prometheus
  docs scrape it with a dedicated job, `honor_labels: true`.
- With the mesh, metrics merging points every injected pod's `prometheus.io/*` annotations at port
  15020; every pod Prometheus then finds must be reachable through the NetworkPolicies, or its
  target is `up == 0`.
"""

from __future__ import annotations

import pytest
import yaml

import istio_injection
import prometheus_model
from kind_manifests import MANIFESTS
from test_network_policies import edge_open

CONFIG = yaml.safe_load((MANIFESTS / "components" / "observability" / "prometheus.yml").read_text())
SERVICES = ["auth", "user", "product", "product-canary", "inventory", "order", "payment", "notification"]
OPENCOST_SERIES = {"__name__": "container_cpu_allocation", "namespace": "cloudmart", "pod": "order-7d9f-abcde",
                   "container": "order", "node": "cloudmart-control-plane"}


@pytest.mark.parametrize("overlay", ["kong-all", "istio-all"])
def test_opencost_is_scraped_once_and_keeps_its_labels(rendered, overlay):
    found = [t for t in prometheus_model.targets(CONFIG, rendered[overlay]) if t.pod == "opencost"]
    assert [(t.job, t.port, t.path) for t in found] == [("opencost", 9003, "/metrics")]
    # As OpenCost's Prometheus docs configure it: a target label added to this job later (say a
    # relabelling that sets `namespace`) must still not overwrite the labels OpenCost exports.
    assert found[0].honor_labels
    stored = prometheus_model.stored_labels(found[0], OPENCOST_SERIES)
    assert (stored["namespace"], stored["pod"], stored["container"]) == ("cloudmart", "order-7d9f-abcde", "order")
    assert not any(k.startswith("exported_") for k in stored)


def test_opencost_pod_is_not_annotated_for_the_generic_job(rendered):
    (deployment,) = [o for o in rendered["kong-all"] if o["kind"] == "Deployment" and o["metadata"]["name"] == "opencost"]
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert not any(k.startswith("prometheus.io/") for k in annotations)


def test_a_generic_job_would_relabel_opencost_series(rendered):
    """The defect, shown on the model: the annotation job without honor_labels rewrites namespace/pod."""
    job = next(j for j in CONFIG["scrape_configs"] if j["job_name"] == "cloudmart-pods")
    assert not job.get("honor_labels", False)
    target = prometheus_model.Target("cloudmart-pods", "opencost", "cloudmart-observability", 9003, "/metrics",
                                     {"namespace": "cloudmart-observability", "pod": "opencost-5c6d-xyz"})
    stored = prometheus_model.stored_labels(target, OPENCOST_SERIES)
    assert stored["namespace"] == "cloudmart-observability" and stored["exported_namespace"] == "cloudmart"


def test_every_service_replica_is_scraped_with_its_namespace(rendered):
    found = {t.pod: t for t in prometheus_model.targets(CONFIG, rendered["kong-all"]) if t.job == "cloudmart-pods"}
    for service in SERVICES:
        assert (found[service].port, found[service].path) == (8080, "/metrics"), service
        assert found[service].labels["namespace"] == "cloudmart" and found[service].labels["app"] == service


def meshed_objects(objects: list[dict]) -> list[dict]:
    """The overlay's workloads as the cluster runs them: meshed ones as the injector returns their
    pods, plus the gateway Deployment Istio creates for the Gateway `cloudmart` (annotated by its
    template for merged metrics on 15020, labelled from `spec.infrastructure`)."""
    values = istio_injection.load_values()
    namespaces = istio_injection.injected_namespaces(objects)
    out = [o for o in objects if not istio_injection.is_injected(o, namespaces)]
    out += istio_injection.injected_pods(objects, values)
    gateway = next(o for o in objects if o["kind"] == "Gateway" and o["metadata"]["name"] == "cloudmart")
    labels = {**gateway["spec"].get("infrastructure", {}).get("labels", {}),
              "gateway.networking.k8s.io/gateway-name": "cloudmart"}
    out.append({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "cloudmart-istio", "namespace": "cloudmart", "labels": labels,
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "15020",
                                             "prometheus.io/path": "/stats/prometheus"}},
                "spec": {"containers": [{"name": "istio-proxy", "image": "auto",
                                         "ports": [{"containerPort": 15020, "name": "metrics"},
                                                   {"containerPort": 80, "name": "http"}]}]}})
    return out


def unreachable_targets(objects: list[dict]) -> list[str]:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pods = {p["name"]: (p["namespace"], p["labels"]) for p in prometheus_model.pods_of(objects)}
    prometheus = pods["prometheus"]
    return [f"{t.job}: {t.namespace}/{t.pod}:{t.port}" for t in prometheus_model.targets(CONFIG, objects)
            if not edge_open(policies, prometheus, pods[t.pod], t.port)]


def test_every_meshed_target_is_reachable_from_prometheus(rendered):
    objects = meshed_objects(rendered["istio-all"])
    found = prometheus_model.targets(CONFIG, objects)
    merged = {t.pod for t in found if t.port == 15020}
    assert {"order", "postgres", "nats", "redis", "mongo", "cloudmart-istio"} <= merged
    assert unreachable_targets(objects) == []


def test_every_target_is_reachable_without_the_mesh(rendered):
    assert unreachable_targets(rendered["kong-all"]) == []
