"""Every overlay renders with the real `kubectl kustomize`, and the overlays say what they claim."""

from __future__ import annotations

from collections import Counter

import pytest

from kind_manifests import OVERLAYS

IMAGE = "ghcr.io/cloudmart-course/cloudmart:0.1.0"
SERVICES = {"auth", "user", "product", "inventory", "order", "payment", "notification"}


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def test_every_overlay_is_listed():
    assert {"kong", "istio", "kong-all", "istio-all"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_overlay_renders_unique_objects(rendered, overlay):
    objects = rendered[overlay]
    ids = Counter((o["apiVersion"].split("/")[0], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
                  for o in objects)
    assert [i for i, n in ids.items() if n > 1] == []
    services = {d["metadata"]["name"] for d in by_kind(objects, "Deployment")
                if d["metadata"]["labels"].get("app.kubernetes.io/component") == "service"}
    assert services == SERVICES | {"product-canary"}
    for kind in ("StatefulSet",):
        assert {s["metadata"]["name"] for s in by_kind(objects, kind)} == {"postgres", "mongo", "nats"}
    assert {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(objects, "HorizontalPodAutoscaler")} == SERVICES
    assert {p["metadata"]["name"] for p in by_kind(objects, "PodDisruptionBudget")} == SERVICES


def test_services_are_wired_to_generated_config(rendered):
    objects = rendered["base"]
    generated = {o["metadata"]["name"] for o in objects if o["kind"] in ("ConfigMap", "Secret")}
    for d in by_kind(objects, "Deployment"):
        if d["metadata"]["labels"].get("app.kubernetes.io/component") != "service":
            continue
        container = d["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == IMAGE
        refs = [e.get("configMapRef", e.get("secretRef"))["name"] for e in container["envFrom"]]
        assert all(r in generated for r in refs), (d["metadata"]["name"], refs, generated)
        env = {e["name"]: e for e in container["env"]}
        service = d["metadata"]["name"]
        if service in {"user", "order", "payment", "inventory", "notification"}:
            ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert ref["name"] in generated and ref["key"] == f"DATABASE_URL_{service.upper()}"
        if service.startswith("product"):
            assert env["MONGO_URL"]["valueFrom"]["secretKeyRef"]["name"] in generated
        assert d["spec"]["template"]["spec"]["serviceAccountName"] == service.removesuffix("-canary")


def test_every_database_role_has_a_url_and_a_password(rendered):
    secret = next(o for o in rendered["base"] if o["kind"] == "Secret" and o["metadata"]["name"].startswith("cloudmart-db"))
    keys = set(secret["data"])
    for service in ("user", "order", "payment", "inventory", "notification"):
        assert {f"DATABASE_URL_{service.upper()}", f"PASSWORD_{service.upper()}"} <= keys


@pytest.mark.parametrize("gateway,klass", [("kong", "kong"), ("istio", "istio"), ("kong-all", "kong"), ("istio-all", "istio")])
def test_gateway_class_is_patched_and_routes_identical(rendered, gateway, klass):
    gw = by_kind(rendered[gateway], "Gateway")
    assert [g["spec"]["gatewayClassName"] for g in gw] == [klass]
    base_routes = {r["metadata"]["name"]: r["spec"] for r in by_kind(rendered["base"], "HTTPRoute")}
    routes = {r["metadata"]["name"]: r["spec"] for r in by_kind(rendered[gateway], "HTTPRoute")}
    assert routes == base_routes     # one set of routes for both gateways


def test_kong_attaches_rate_limit_and_jwt(rendered):
    objects = rendered["kong"]
    plugins = {p["metadata"]["name"]: p["plugin"] for p in by_kind(objects, "KongPlugin")}
    assert plugins == {"cloudmart-rate-limit": "rate-limiting", "cloudmart-jwt": "jwt"}
    for route in by_kind(objects, "HTTPRoute"):
        attached = route["metadata"]["annotations"]["konghq.com/plugins"].split(",")
        assert set(attached) <= set(plugins)
        assert "cloudmart-rate-limit" in attached
        assert ("cloudmart-jwt" in attached) == (route["metadata"]["name"] != "auth")
    (klass,) = by_kind(objects, "GatewayClass")
    assert klass["spec"]["controllerName"] == "konghq.com/kic-gateway-controller"


def test_istio_mesh_is_strict_and_deny_by_default(rendered):
    objects = rendered["istio"]
    (peer,) = by_kind(objects, "PeerAuthentication")
    assert peer["spec"]["mtls"]["mode"] == "STRICT"
    namespace = next(o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] == "cloudmart")
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "AuthorizationPolicy")}
    assert policies["allow-nothing"] == {}
    # ...which would silence the gateway Istio deploys into the namespace, unless it is allowed.
    gateway = policies["anyone-to-gateway"]
    assert gateway["selector"]["matchLabels"] == {"gateway.networking.k8s.io/gateway-name": "cloudmart"}
    assert gateway["rules"] == [{}]
    # Every allow rule names callers by identity, and each identity is a ServiceAccount we create.
    accounts = {f"cluster.local/ns/cloudmart/sa/{a['metadata']['name']}" for a in by_kind(objects, "ServiceAccount")}
    accounts.add("cluster.local/ns/cloudmart/sa/cloudmart-istio")    # the gateway Istio deploys
    for name, spec in policies.items():
        for rule in spec.get("rules", []):
            for source in rule.get("from", []):
                assert set(source["source"]["principals"]) <= accounts, name
    hosts = {d["spec"]["host"].split(".")[0] for d in by_kind(objects, "DestinationRule")}
    assert hosts == SERVICES | {"product-canary"}
    for d in by_kind(objects, "DestinationRule"):
        assert d["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] > 0
    assert {v["metadata"]["name"] for v in by_kind(objects, "VirtualService")} == SERVICES


def test_network_policies_deny_by_default_then_allow_the_graph(rendered):
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(rendered["base"], "NetworkPolicy")}
    assert policies["default-deny-all"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # Each infra server admits exactly its own port from services.
    for name, port in [("postgres-ingress-services", 5432), ("redis-ingress-services", 6379),
                       ("nats-ingress-services", 4222), ("mongo-ingress-product", 27017)]:
        (rule,) = policies[name]["ingress"]
        assert [p["port"] for p in rule["ports"]] == [port]


def test_observability_scrapes_every_service(rendered):
    objects = rendered["kong-all"]
    for d in by_kind(objects, "Deployment"):
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "service":
            annotations = d["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8080"
    dashboards = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("grafana-dashboards"))
    import json
    exprs = [t["expr"] for name in dashboards["data"] for p in json.loads(dashboards["data"][name])["panels"] for t in p["targets"]]
    assert any("http_requests_total" in e for e in exprs)
    assert any("http_request_duration_seconds_bucket" in e for e in exprs)
    assert any("saga_steps_total" in e for e in exprs)


def test_argocd_application_points_at_an_overlay_without_itself(rendered):
    (app,) = by_kind(rendered["kong-all"], "Application")
    path = app["spec"]["source"]["path"]
    from kind_manifests import MANIFESTS, ROOT
    assert (ROOT / path / "kustomization.yaml").exists()
    assert "argocd" not in (ROOT / path / "kustomization.yaml").read_text()
    assert app["spec"]["project"] in {p["metadata"]["name"] for p in by_kind(rendered["kong-all"], "AppProject")}
