"""Translations checked on the intermediate model, bad input, and Envoy's verdict on every config.

Each feature is asserted where it is one field of a dataclass; `test_golden_gateway_config` pins
the Envoy JSON of one small gateway; every plane built here is also run through
`envoy --mode validate`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cluster import topology
from cluster.dataplane import build, envoy, gateway_api, istio, kong
from cluster.dataplane import model as m
from cluster.dataplane.errors import ResourceError
from cluster.dataplane.proxy import EnvoyConfigError, validate_plane

HERE = Path(__file__).resolve().parent
COMPONENTS = topology.MANIFESTS_DIR / "components"
GOLDEN = HERE / "golden" / "gateway.json"


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def route(name="r", rules=None, annotations=None) -> dict:
    meta: dict = {"name": name}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta,
            "spec": {"rules": rules if rules is not None else [{"backendRefs": [{"name": "a"}]}]}}


# -- HTTPRoute ---------------------------------------------------------------------------------------

def test_httproute_matches_weights_timeouts_and_filters():
    rules = [{
        "matches": [{"path": {"type": "PathPrefix", "value": "/api/products"},
                     "headers": [{"name": "X-Cloudmart-Version", "value": "v2"}],
                     "queryParams": [{"name": "debug", "type": "RegularExpression", "value": "1|yes"}],
                     "method": "GET"},
                    {"path": {"type": "Exact", "value": "/api/products/featured"}}],
        "backendRefs": [{"name": "a", "weight": 80}, {"name": "b", "weight": 20}],
        "timeouts": {"request": "10s", "backendRequest": "2s"},
        "retry": {"attempts": 3, "codes": [503, 504]},
        "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
                        "set": [{"name": "x-env", "value": "lab"}], "remove": ["x-debug"]}},
                    {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "b"}, "percent": 10}},
                    {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                                   "replacePrefixMatch": "/v2"}}}],
    }]
    routes = gateway_api.routes([route("product", rules)], {"a", "b"})
    exact, prefix = routes                    # Exact before PathPrefix: Gateway API's precedence
    assert exact.match == m.RouteMatch("/api/products/featured", "exact")
    assert prefix.match.path_kind == "segment_prefix"
    assert prefix.match.headers == (m.HeaderMatch("x-cloudmart-version", m.StringMatch("exact", "v2")),)
    assert prefix.match.query == (m.QueryMatch("debug", m.StringMatch("regex", "1|yes")),)
    assert prefix.match.methods == ("GET",)
    assert prefix.clusters == (m.WeightedCluster("a", 80), m.WeightedCluster("b", 20))
    assert prefix.timeout_s == 10 and prefix.retry.per_try_timeout_s == 2
    assert prefix.retry.attempts == 3 and prefix.retry.retriable_status_codes == (503, 504)
    assert prefix.request_headers == m.HeaderChanges(set=(("x-env", "lab"),), remove=("x-debug",))
    assert prefix.mirrors == (m.Mirror("b", 10.0),)
    assert prefix.prefix_rewrite == "/v2"


def test_httproute_precedence_longest_prefix_and_headers_first():
    rules = [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": [{"name": "a"}]},
             {"matches": [{"path": {"type": "PathPrefix", "value": "/api/products"}}], "backendRefs": [{"name": "a"}]},
             {"matches": [{"path": {"type": "PathPrefix", "value": "/api/products"},
                           "headers": [{"name": "x", "value": "1"}]}], "backendRefs": [{"name": "b"}]}]
    routes = gateway_api.routes([route("r", rules)], {"a", "b"})
    assert [(r.match.path, len(r.match.headers)) for r in routes] == [("/api/products", 1), ("/api/products", 0),
                                                                         ("/api", 0)]


@pytest.mark.parametrize("rule, field", [
    ({"backendRefs": [{"name": "missing"}]}, "spec.rules[0].backendRefs[0].name"),
    ({"backendRefs": [{"name": "a", "weight": -1}]}, "spec.rules[0].backendRefs[0].weight"),
    ({"backendRefs": [{"name": "a"}], "timeouts": {"request": "ten seconds"}}, "spec.rules[0].timeouts.request"),
    ({"backendRefs": [{"name": "a"}], "filterz": []}, "spec.rules[0].filterz"),
    ({"backendRefs": [{"name": "a"}], "matches": [{"path": {"type": "Glob", "value": "/x"}}]},
     "spec.rules[0].matches[0].path.type"),
    ({"backendRefs": [{"name": "a"}], "filters": [{"type": "ExtensionRef"}]}, "spec.rules[0].filters[0].type"),
    ({"backendRefs": [{"name": "a"}], "sessionPersistence": {"type": "Cookie"}}, "spec.rules[0].sessionPersistence"),
])
def test_httproute_bad_input_names_object_and_field(rule, field):
    with pytest.raises(ResourceError) as err:
        gateway_api.routes([route("shop", [rule])], {"a"})
    assert str(err.value).startswith(f"HTTPRoute shop: {field}:")
    assert "\n" not in str(err.value)


# -- Istio -------------------------------------------------------------------------------------------

def test_destination_rules_of_the_istio_component():
    objects = load(COMPONENTS / "istio" / "destinationrules.yaml")
    host, policy = istio.destination_rule(objects[0])
    assert host == "auth"
    assert policy.circuit_breaker == m.CircuitBreaker(max_connections=100, max_pending_requests=50, max_requests=200)
    assert policy.connect_timeout_s == 2 and policy.max_requests_per_connection == 100
    assert policy.outlier_detection == m.OutlierDetection(consecutive_5xx=5, interval_s=10, base_ejection_time_s=30,
                                                          max_ejection_percent=50)
    assert policy.mtls is True
    tls = m.UpstreamTLS("cert", "ca")
    applied = policy.apply(m.Cluster("c", ()), tls)
    assert applied.tls == tls and applied.circuit_breaker.max_connections == 100


@pytest.mark.parametrize("traffic_policy, field", [
    ({"connectionPool": {"tcp": {"maxConnections": 0}}}, "spec.trafficPolicy.connectionPool.tcp.maxConnections"),
    ({"connectionPool": {"tcp": {"maxConections": 5}}}, "spec.trafficPolicy.connectionPool.tcp.maxConections"),
    ({"loadBalancer": {"simple": "MAGLEV"}}, "spec.trafficPolicy.loadBalancer.simple"),
    ({"tls": {"mode": "SIMPLE"}}, "spec.trafficPolicy.tls.mode"),
    ({"outlierDetection": {"maxEjectionPercent": 150}}, "spec.trafficPolicy.outlierDetection.maxEjectionPercent"),
    ({"outlierDetection": {"consecutiveErrors": 3}}, "spec.trafficPolicy.outlierDetection.consecutiveErrors"),
    ({"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}}}, "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy"),
])
def test_destination_rule_bad_input(traffic_policy, field):
    dr = {"kind": "DestinationRule", "metadata": {"name": "pay"}, "spec": {"host": "payment", "trafficPolicy": traffic_policy}}
    with pytest.raises(ResourceError, match=f"^DestinationRule pay: {field}:"):
        istio.destination_rule(dr)


def test_virtual_service_fault_retries_mirror_and_default_retry():
    vs = {"kind": "VirtualService", "metadata": {"name": "inv"}, "spec": {"hosts": ["inventory.cloudmart.svc.cluster.local"], "http": [
        {"match": [{"uri": {"prefix": "/api/stock"}, "headers": {"x-canary": {"exact": "1"}}}],
         "route": [{"destination": {"host": "inventory"}, "weight": 90}, {"destination": {"host": "order"}, "weight": 10}],
         "timeout": "3s", "retries": {"attempts": 4, "perTryTimeout": "0.5s", "retryOn": "5xx,gateway-error,503"},
         "fault": {"delay": {"fixedDelay": "200ms", "percentage": {"value": 12.5}},
                   "abort": {"httpStatus": 503, "percentage": {"value": 0.1}}},
         "mirror": {"host": "order"}, "mirrorPercentage": {"value": 5}},
        {"route": [{"destination": {"host": "inventory"}}]}]}}
    hosts, (first, rest) = istio.virtual_service(vs, {"inventory", "order"})
    assert hosts == ["inventory"]
    assert first.match.path_kind == "prefix" and first.match.headers[0].match == m.StringMatch("exact", "1")
    assert first.clusters == (m.WeightedCluster("inventory", 90), m.WeightedCluster("order", 10))
    assert first.timeout_s == 3
    assert first.retry == m.RetryPolicy(4, "5xx,gateway-error,retriable-status-codes", 0.5, (503,))
    assert first.fault == m.Fault(0.2, 12.5, 503, 0.1)
    assert first.mirrors == (m.Mirror("order", 5.0),)
    assert rest.retry == istio.DEFAULT_RETRY           # Istio's default when none is given
    assert rest.clusters == (m.WeightedCluster("inventory", 100),)
    # 0.1 % survives the rendering (Envoy's FractionalPercent in millionths).
    assert envoy.fault_config(first.fault)["abort"]["percentage"] == {"numerator": 1000, "denominator": "MILLION"}


def test_peer_authentication_selector_beats_namespace():
    pas = [{"kind": "PeerAuthentication", "metadata": {"name": "default"}, "spec": {"mtls": {"mode": "STRICT"}}},
           {"kind": "PeerAuthentication", "metadata": {"name": "legacy"},
            "spec": {"selector": {"matchLabels": {"app": "legacy"}}, "mtls": {"mode": "PERMISSIVE"}}}]
    assert istio.peer_authentication_mode(pas, {"app": "payment"}) == "STRICT"
    assert istio.peer_authentication_mode(pas, {"app": "legacy"}) == "PERMISSIVE"
    assert istio.peer_authentication_mode([], {"app": "x"}) == "PERMISSIVE"     # Istio's default
    with pytest.raises(ResourceError, match=r"^PeerAuthentication bad: spec.mtls.mode:"):
        istio.peer_authentication_mode([{"kind": "PeerAuthentication", "metadata": {"name": "bad"},
                                         "spec": {"mtls": {"mode": "STRICTEST"}}}], {})


def test_authorization_policies_of_the_istio_component():
    objects = load(COMPONENTS / "istio" / "authorizationpolicies.yaml")
    labels = {"app.kubernetes.io/name": "product", "app.kubernetes.io/component": "service"}
    rbac = istio.authorization(objects, labels, "cloudmart.local")
    assert [r.action for r in rbac] == ["ALLOW"]
    names = sorted(p.name for p in rbac[0].policies)
    assert names == ["gateway-to-services.0[0]", "order-to-product.0[0]"]
    order = next(p for p in rbac[0].policies if p.name.startswith("order-to-product"))
    # `cluster.local` in a policy is the mesh's own trust domain.
    assert order.principals == (m.StringMatch("exact", "spiffe://cloudmart.local/ns/cloudmart/sa/order"),)
    assert order.methods == ("GET",)
    assert order.paths == (m.StringMatch("exact", "/api/products"), m.StringMatch("prefix", "/api/products/"),
                           m.StringMatch("exact", "/internal/prices"))
    # A workload no ALLOW policy selects still gets the namespace's allow-nothing: deny all.
    assert istio.authorization(objects, {"app.kubernetes.io/name": "other"}, "cloudmart.local") == (m.Rbac("ALLOW", ()),)
    assert istio.authorization([], labels, "cloudmart.local") == ()             # no policy: allow all


@pytest.mark.parametrize("spec, field", [
    ({"action": "CUSTOM", "provider": {"name": "opa"}}, "spec.action"),
    ({"rules": [{"from": [{"source": {"principal": ["x"]}}]}]}, "spec.rules[0].from[0].source.principal"),
    ({"rules": [{"to": [{"operation": {"ports": ["http"]}}]}]}, "spec.rules[0].to[0].operation.ports[0]"),
    ({"actions": "ALLOW"}, "spec.actions"),
])
def test_authorization_policy_bad_input(spec, field):
    ap = {"kind": "AuthorizationPolicy", "metadata": {"name": "p"}, "spec": spec}
    with pytest.raises(ResourceError, match="^" + re.escape(f"AuthorizationPolicy p: {field}:")):
        istio.authorization([ap], {}, "cloudmart.local")


def test_istio_path_rules():
    assert istio._istio_value("*") == m.StringMatch("present")
    assert istio._istio_value("/api/*") == m.StringMatch("prefix", "/api/")
    assert istio._istio_value("*.html") == m.StringMatch("suffix", ".html")
    assert istio._istio_value("/healthz") == m.StringMatch("exact", "/healthz")


def test_request_authentication_becomes_jwt_authn():
    ra = {"kind": "RequestAuthentication", "metadata": {"name": "jwt"}, "spec": {"jwtRules": [{
        "issuer": "cloudmart-auth", "audiences": ["cloudmart"],
        "jwksUri": "http://auth.cloudmart.svc.cluster.local/api/auth/.well-known/jwks.json",
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}]}]}}
    jwks = {"http://auth.cloudmart.svc.cluster.local/api/auth/.well-known/jwks.json":
            ("auth", "http://auth/api/auth/.well-known/jwks.json")}
    auth = istio.request_authentication([ra], {}, jwks)
    assert auth.allow_missing is True
    (p,) = auth.providers
    assert (p.issuer, p.audiences, p.jwks_cluster, p.forward) == ("cloudmart-auth", ("cloudmart",), "auth", False)
    assert p.claim_headers == (("x-sub", "sub"),)
    with pytest.raises(ResourceError, match=r"^RequestAuthentication jwt: spec.jwtRules\[0\].jwksUri"):
        istio.request_authentication([ra], {}, {})


@pytest.mark.parametrize("kind", ["Sidecar", "ServiceEntry", "EnvoyFilter"])
def test_unhonoured_istio_kinds_are_refused(kind):
    obj = {"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(ResourceError, match=f"^{kind} x: kind: {kind} is not honoured"):
        build.gateway([obj], {"a": []})


# -- Kong --------------------------------------------------------------------------------------------

def test_kong_component_translation_and_report():
    objects = load(COMPONENTS / "kong" / "plugins.yaml") + load(COMPONENTS / "kong" / "consumers.yaml")
    objects += [route("product", annotations={"konghq.com/plugins": "cloudmart-rate-limit,cloudmart-jwt"}),
                route("auth", annotations={"konghq.com/plugins": "cloudmart-rate-limit"})]
    issuer = kong.JwtIssuer("cloudmart-auth", "auth", "http://auth/api/auth/.well-known/jwks.json")
    config = kong.translate(objects, issuer)
    assert config.route_limits["product"] == (m.RateLimit("cloudmart-rate-limit.second", 1000, 1000, 1.0, "ip"),)
    assert config.route_jwt == {"product": True, "auth": False}
    assert config.jwt.allow_missing is True                      # `anonymous` is set
    assert config.jwt.providers[0].issuer == "cloudmart-auth"
    report = config.report
    assert report.status("cloudmart-rate-limit", "config.second") == "honoured"
    assert report.status("cloudmart-rate-limit", "config.policy") == "honoured"
    assert report.status("cloudmart-jwt", "credentials") == "approximated"


def test_kong_rate_limit_windows_and_policies():
    plugin = {"kind": "KongPlugin", "metadata": {"name": "rl"}, "plugin": "rate-limiting",
              "config": {"second": 5, "minute": 100, "hour": 1000, "month": 10**6, "limit_by": "consumer",
                         "policy": "redis"}}
    config = kong.translate([plugin, route("r", annotations={"konghq.com/plugins": "rl"})])
    limits = config.route_limits["r"]
    assert [(rl.max_tokens, rl.fill_interval_s) for rl in limits] == [(5, 1.0), (100, 60.0), (1000, 3600.0)]
    assert {rl.key for rl in limits} == {"header:x-consumer-username"}
    assert config.report.status("rl", "config.policy") == "approximated"
    assert config.report.status("rl", "config.month") == "unsupported"


@pytest.mark.parametrize("plugin, config, field", [
    ("rate-limitting", {}, "plugin"),
    ("rate-limiting", {"minute": 0}, "config.minute"),
    ("rate-limiting", {"minute": 5, "limit_by": "planet"}, "config.limit_by"),
    ("rate-limiting", {"minute": 5, "polcy": "local"}, "config.polcy"),
    ("rate-limiting", {}, "config"),
    ("key-auth", {}, "plugin"),
    ("request-transformer", {"add": {"headers": ["no-colon"]}}, r"config.add.headers\[0\]"),
    ("cors", {"origin": ["*"]}, "config.origin"),
])
def test_kong_bad_input(plugin, config, field):
    obj = {"kind": "KongPlugin", "metadata": {"name": "p"}, "plugin": plugin, "config": config}
    with pytest.raises(ResourceError, match=f"^KongPlugin p: {field}:"):
        kong.translate([obj])


def test_kong_annotation_naming_a_missing_plugin():
    with pytest.raises(ResourceError, match=r"^HTTPRoute r: metadata.annotations.konghq.com/plugins: KongPlugin 'nope'"):
        kong.translate([route("r", annotations={"konghq.com/plugins": "nope"})])


# -- whole planes, golden config and Envoy's own validation -----------------------------------------

def _base_objects() -> tuple[list[dict], set[str]]:
    objects = topology.render(topology.BASE_DIR)
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    return [o for o in objects if o["kind"] == "HTTPRoute"], services


def test_the_base_manifests_with_kong_and_istio_validate_in_envoy(tmp_path):
    routes, services = _base_objects()
    for r in routes:
        plugins = "cloudmart-rate-limit" if r["metadata"]["name"] == "auth" else "cloudmart-rate-limit,cloudmart-jwt"
        r["metadata"].setdefault("annotations", {})["konghq.com/plugins"] = plugins
    kong_objects = load(COMPONENTS / "kong" / "plugins.yaml") + load(COMPONENTS / "kong" / "consumers.yaml")
    istio_objects = [o for name in ("peerauthentication", "authorizationpolicies", "destinationrules", "virtualservices")
                     for o in load(COMPONENTS / "istio" / f"{name}.yaml")]
    endpoints = {s: [m.Endpoint(port=20000 + i)] for i, s in enumerate(sorted(services))}
    issuer = kong.JwtIssuer("cloudmart-auth", "auth", "http://auth/api/auth/.well-known/jwks.json")
    built = build.gateway(routes + kong_objects + [o for o in istio_objects if o["kind"] == "DestinationRule"],
                          endpoints, issuer=issuer)
    assert built.plane.cluster(build.outbound("product")).circuit_breaker.max_connections == 100
    validate_plane(built.plane)
    # A sidecar per service, from the Istio component, validated too.
    from cluster.mesh import MeshCA
    ident = MeshCA(tmp_path / "ca").issue("product-0", "product")
    identity = build.MeshIdentity(ident.ca_file, ident.cert_file, ident.key_file)
    for service in ("product", "order", "payment"):
        w = build.Workload(service, {"app.kubernetes.io/name": service, "app.kubernetes.io/component": "service"},
                           m.Endpoint(port=21000))
        peers = {p: (0, endpoints[p]) for p in ("auth", "product", "inventory", "payment") if p != service}
        plane = build.sidecar(istio_objects, w, identity, peers, services)
        assert plane.listener("inbound").tls.mode == "STRICT"
        assert all(l.faults for l in plane.listeners if l.name.startswith("outbound-"))
        validate_plane(plane)


def test_envoy_refuses_what_the_model_allows_and_says_why():
    plane = m.DataPlane([m.Listener("l", (m.VirtualHost("v", routes=(
        m.Route("r", m.RouteMatch("/"), clusters=(m.WeightedCluster("c", 1),)),)),))],
        [m.Cluster("c", (m.Endpoint(port=1),), connect_timeout_s=0.0)])
    with pytest.raises(EnvoyConfigError, match="ConnectTimeout: value must be greater than 0s"):
        validate_plane(plane)


def test_weights_render_as_gateway_api_says():
    def rendered(*weights):
        clusters = tuple(m.WeightedCluster(f"c{i}", w) for i, w in enumerate(weights))
        return envoy.route(m.Route("r", m.RouteMatch("/"), clusters=clusters))
    assert rendered(0, 0)["direct_response"]["status"] == 500          # every backend at weight 0
    assert rendered(0)["direct_response"]["status"] == 500
    assert rendered(100, 0)["route"]["cluster"] == "c0"                 # a weight-0 backend gets nothing
    assert rendered(80, 20)["route"]["weighted_clusters"]["clusters"] == [{"name": "c0", "weight": 80},
                                                                         {"name": "c1", "weight": 20}]


def test_model_check_catches_dangling_names():
    plane = m.DataPlane([m.Listener("l", (m.VirtualHost("v", routes=(
        m.Route("r", m.RouteMatch("/"), clusters=(m.WeightedCluster("nope", 1),)),)),))], [])
    with pytest.raises(ValueError, match="unknown cluster 'nope'"):
        envoy.static_bootstrap(plane)


def _golden_plane() -> m.DataPlane:
    rules = [{"matches": [{"path": {"type": "PathPrefix", "value": "/api/products"},
                           "headers": [{"name": "x-cloudmart-version", "value": "v2"}]}],
              "backendRefs": [{"name": "product-canary"}], "timeouts": {"request": "10s"}},
             {"matches": [{"path": {"type": "PathPrefix", "value": "/api/products"}}],
              "backendRefs": [{"name": "product", "weight": 90}, {"name": "product-canary", "weight": 10}],
              "timeouts": {"request": "10s"}, "retry": {"attempts": 2, "codes": [503]}}]
    plugin = {"kind": "KongPlugin", "metadata": {"name": "rl"}, "plugin": "rate-limiting",
              "config": {"minute": 600, "limit_by": "ip"}}
    dr = {"kind": "DestinationRule", "apiVersion": "networking.istio.io/v1", "metadata": {"name": "product"},
          "spec": {"host": "product", "trafficPolicy": {
              "connectionPool": {"tcp": {"maxConnections": 10}, "http": {"http1MaxPendingRequests": 5}},
              "outlierDetection": {"consecutive5xxErrors": 3, "interval": "5s", "baseEjectionTime": "15s",
                                   "maxEjectionPercent": 50}}}}
    objects = [route("product", rules, {"konghq.com/plugins": "rl"}), plugin, dr]
    endpoints = {"product": [m.Endpoint(port=20001), m.Endpoint(port=20002)],
                 "product-canary": [m.Endpoint(port=20003)], "auth": [m.Endpoint(port=20004)]}
    issuer = kong.JwtIssuer("cloudmart-auth", "auth", "http://auth/api/auth/.well-known/jwks.json")
    return build.gateway(objects, endpoints, issuer=issuer).plane


def test_golden_gateway_config():
    """The Envoy JSON of one gateway, pinned; regenerate with CLOUDMART_REGEN_GOLDEN=1 and review the diff."""
    import os
    rendered = envoy.static_bootstrap(_golden_plane(), node_id="golden")
    text = json.dumps(rendered, indent=2, sort_keys=True) + "\n"
    if os.environ.get("CLOUDMART_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    validate_plane(_golden_plane())
