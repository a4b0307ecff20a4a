"""The kustomize base renders with the real kubectl, and the local target reads exactly it."""

from __future__ import annotations

import pytest

from cluster import topology

SEVEN = {"auth", "user", "product", "order", "payment", "inventory", "notification"}


@pytest.fixture(scope="module")
def objects():
    return topology.render()


def test_base_renders_with_kubectl(objects):
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "Deployment", "Service", "Gateway", "HTTPRoute"} <= kinds
    assert all(o["metadata"].get("namespace", "cloudmart") == "cloudmart"
               for o in objects if o["kind"] != "Namespace")


def test_every_service_deployment_follows_the_contract(objects):
    deps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"
            and o["metadata"]["labels"].get("app.kubernetes.io/component") == "service"}
    assert SEVEN <= set(deps)
    for name in SEVEN:
        dep = deps[name]
        labels = dep["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name and labels["app.kubernetes.io/part-of"] == "cloudmart"
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["name"] == name
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["image"] == "ghcr.io/cloudmart-course/cloudmart:0.1.0"
        assert {"name": "http", "containerPort": 8080} in container["ports"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PORT"] == "8080" and env["SERVICE_NAME"] == name


def test_routes_cover_every_service_and_the_canary(objects):
    routes = [o for o in objects if o["kind"] == "HTTPRoute"]
    assert {r["metadata"]["name"] for r in routes} >= SEVEN
    product = next(r for r in routes if r["metadata"]["name"] == "product")
    backends = [b for rule in product["spec"]["rules"] for b in rule["backendRefs"]]
    assert {"name": "product-canary", "port": 80, "weight": 0} in backends
    header_rules = [rule for rule in product["spec"]["rules"]
                    if any(m.get("headers") for m in rule["matches"])]
    assert header_rules and header_rules[0]["matches"][0]["headers"][0]["name"] == "x-cloudmart-version"
    assert all(rule["timeouts"]["request"] for r in routes for rule in r["spec"]["rules"])


def test_topology_reads_the_manifests():
    topo = topology.load()
    assert set(topo.service_names) == SEVEN
    assert topo.deployments["product-canary"].service == "product"
    assert topo.deployments["product-canary"].version == "v2"
    assert topo.deployments["product-canary"].replicas == 0
    assert topo.services["product-canary"] == "product-canary"
    assert topo.deployments["order"].env["PRODUCT_URL"] == "http://product"
    prefixes = {r.path_prefixes[0]: r for r in topo.rules if not r.headers}
    assert prefixes["/api/orders"].backends[0].service == "order"
    assert prefixes["/api/products"].timeout_s == 10.0


def test_topology_changes_with_the_manifests(tmp_path):
    """No second list: a changed copy of the base changes what the local target would run."""
    import shutil

    shutil.copytree(topology.BASE_DIR, tmp_path / "base")
    dep = tmp_path / "base" / "payment" / "deployment.yaml"
    dep.write_text(dep.read_text().replace("replicas: 1", "replicas: 3", 1))
    assert topology.parse(topology.render(tmp_path / "base")).deployments["payment"].replicas == 3


def test_bad_duration_is_rejected():
    with pytest.raises(ValueError, match="bad duration"):
        topology._duration_s("ten seconds")
    assert topology._duration_s("1m30s") == 90.0
    assert topology._duration_s("250ms") == 0.25
