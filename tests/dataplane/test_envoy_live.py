"""Behaviour of generated configs on a real Envoy with real upstreams, all on loopback.

Each test builds a data plane through the translators (or the model), starts Envoy on it and
sends real requests; numbers are checked against bounds that hold for the mechanism (binomial
bounds for random weights, the bucket size for rate limits), not against recorded outputs.
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cluster.dataplane import build, istio, kong
from cluster.dataplane import model as m
from cluster.dataplane.proxy import EnvoyConfigError
from cluster.mesh import MeshCA
from services.common import auth as cm_auth

pytestmark = pytest.mark.timeout(120)
JWKS_PATH = "/api/auth/.well-known/jwks.json"


def http_route(name: str, rules: list[dict], annotations: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta,
            "spec": {"parentRefs": [{"name": "cloudmart"}], "rules": rules}}


def ep(u) -> m.Endpoint:
    return m.Endpoint(port=u.port)


def gateway_url(proxy) -> str:
    return f"http://127.0.0.1:{proxy.ports()['gateway']}"


def binomial_bounds(n: int, p: float, z: float = 4.5) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - z * sd, n * p + z * sd


def test_weights_split_within_binomial_bounds(upstreams, envoys):
    stable, canary = upstreams("stable"), upstreams("canary")
    route = http_route("product", [{"matches": [{"path": {"type": "PathPrefix", "value": "/api/products"}}],
                                    "backendRefs": [{"name": "product", "weight": 80},
                                                    {"name": "product-canary", "weight": 20}]}])
    built = build.gateway([route], {"product": [ep(stable)], "product-canary": [ep(canary)]})
    proxy = envoys(built.plane, "gw")
    n = 400
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        names = [client.get("/api/products").json()["name"] for _ in range(n)]
    low, high = binomial_bounds(n, 0.8)
    assert low <= names.count("stable") <= high, names.count("stable")
    assert names.count("stable") + names.count("canary") == n
    # Path-segment prefix: /api/productsX is not /api/products.
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        assert client.get("/api/productsX").status_code == 404


def test_header_match_routes_to_canary_only(upstreams, envoys):
    stable, canary = upstreams("stable"), upstreams("canary")
    route = http_route("product", [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api/products"},
                      "headers": [{"name": "x-cloudmart-version", "value": "v2"}]}],
         "backendRefs": [{"name": "product-canary"}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api/products"}}],
         "backendRefs": [{"name": "product", "weight": 100}, {"name": "product-canary", "weight": 0}]}])
    built = build.gateway([route], {"product": [ep(stable)], "product-canary": [ep(canary)]})
    proxy = envoys(built.plane, "gw")
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        plain = {client.get("/api/products").json()["name"] for _ in range(30)}
        v2 = {client.get("/api/products", headers={"x-cloudmart-version": "v2"}).json()["name"] for _ in range(30)}
    assert plain == {"stable"}
    assert v2 == {"canary"}


def _retry_plane(bad, good, retry: m.RetryPolicy | None, outlier: m.OutlierDetection | None = None):
    cluster = m.Cluster("svc", (ep(bad), ep(good)), outlier_detection=outlier)
    r = m.Route("all", m.RouteMatch("/"), clusters=(m.WeightedCluster("svc", 1),), retry=retry)
    return m.DataPlane([m.Listener("gateway", (m.VirtualHost("all", routes=(r,)),))], [cluster])


def test_retry_on_5xx_hides_an_always_failing_endpoint(upstreams, envoys):
    bad, good = upstreams("bad", status=503), upstreams("good")
    proxy = envoys(_retry_plane(bad, good, m.RetryPolicy(2, "5xx")), "retry")
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        codes = [client.get("/x").status_code for _ in range(100)]
    assert codes.count(200) == 100
    assert bad.hits > 0, "round robin should have tried the bad endpoint"
    assert proxy.stats()["cluster.svc.upstream_rq_retry"] >= 1


def test_without_retry_the_failing_endpoint_shows(upstreams, envoys):
    """The control of the test above: the same plane without a retry policy fails about half."""
    bad, good = upstreams("bad", status=503), upstreams("good")
    proxy = envoys(_retry_plane(bad, good, None), "noretry")
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        codes = [client.get("/x").status_code for _ in range(100)]
    assert 20 <= codes.count(503) <= 80


def test_outlier_detection_ejects_the_failing_endpoint(upstreams, envoys):
    bad, good = upstreams("bad", status=500), upstreams("good")
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "svc"},
          "spec": {"host": "svc.cloudmart.svc.cluster.local", "trafficPolicy": {"outlierDetection": {
              "consecutive5xxErrors": 3, "interval": "1s", "baseEjectionTime": "60s", "maxEjectionPercent": 50}}}}
    _, policy = istio.destination_rule(dr)
    plane = _retry_plane(bad, good, None)
    plane.clusters[0] = policy.apply(plane.clusters[0])
    proxy = envoys(plane, "outlier")
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        first = [client.get("/x").status_code for _ in range(20)]
        after = [client.get("/x").status_code for _ in range(40)]
    assert first.count(500) >= 3               # it took failures to eject it …
    assert after.count(200) == 40              # … and then none reached it
    assert proxy.stats()["cluster.svc.outlier_detection.ejections_enforced_total"] >= 1


def test_circuit_breaker_overflows_a_tiny_pool(upstreams, envoys):
    """Istio's circuit-breaking task: 1 connection, 1 pending request, 3 concurrent callers."""
    slow = upstreams("slow", delay_s=0.2)
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "svc"},
          "spec": {"host": "svc", "trafficPolicy": {"connectionPool": {
              "tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1}}}}}
    _, policy = istio.destination_rule(dr)
    cluster = policy.apply(m.Cluster("svc", (ep(slow),)))
    r = m.Route("all", m.RouteMatch("/"), clusters=(m.WeightedCluster("svc", 1),))
    proxy = envoys(m.DataPlane([m.Listener("gateway", (m.VirtualHost("all", routes=(r,)),))], [cluster]), "cb")
    url = gateway_url(proxy)

    def call(_):
        with httpx.Client(base_url=url, timeout=10) as c:
            return c.get("/x").status_code
    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(call, range(30)))
    assert codes.count(503) >= 1 and codes.count(200) >= 1, codes
    assert proxy.stats()["cluster.svc.upstream_rq_pending_overflow"] == codes.count(503)


def test_kong_rate_limit_fixed_window_per_header_value(upstreams, envoys):
    app = upstreams("app")
    plugin = {"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin", "metadata": {"name": "rl"},
              "plugin": "rate-limiting", "config": {"minute": 5, "limit_by": "header", "header_name": "x-client"}}
    route = http_route("app", [{"backendRefs": [{"name": "app"}]}], {"konghq.com/plugins": "rl"})
    built = build.gateway([route, plugin], {"app": [ep(app)]})
    proxy = envoys(built.plane, "rl")
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        a = [client.get("/x", headers={"x-client": "a"}) for _ in range(12)]
        b = [client.get("/x", headers={"x-client": "b"}) for _ in range(12)]
    assert [r.status_code for r in a].count(200) == 5
    assert [r.status_code for r in b].count(200) == 5          # a bucket of its own
    assert [r.status_code for r in a][5:] == [429] * 7
    assert a[0].headers["x-ratelimit-limit"] == "5"
    assert app.hits == 10


def test_kong_rate_limit_by_ip_counts_a_burst(upstreams, envoys):
    app = upstreams("app")
    plugin = {"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin", "metadata": {"name": "rl"},
              "plugin": "rate-limiting", "config": {"minute": 20, "limit_by": "ip", "policy": "local"}}
    route = http_route("app", [{"backendRefs": [{"name": "app"}]}], {"konghq.com/plugins": "rl"})
    other = http_route("free", [{"matches": [{"path": {"type": "PathPrefix", "value": "/free"}}],
                                 "backendRefs": [{"name": "app"}]}], {"konghq.com/plugins": ""})
    built = build.gateway([route, other, plugin], {"app": [ep(app)]})
    proxy = envoys(built.plane, "rlip")
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        codes = [client.get("/x").status_code for _ in range(60)]
        free = [client.get("/free").status_code for _ in range(30)]
    assert codes.count(200) == 20 and codes.count(429) == 40
    assert free == [200] * 30                    # the plugin is attached to one route only


@pytest.fixture
def signing_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _token(key, *, sub="alice", iss="cloudmart-auth", exp_in=300, roles=("customer",)) -> str:
    now = int(time.time())
    claims = {"iss": iss, "aud": "cloudmart", "sub": sub, "roles": list(roles), "cm_roles": ",".join(roles),
              "iat": now, "nbf": now, "exp": now + exp_in}
    return pyjwt.encode(claims, key, algorithm="RS256", headers={"kid": cm_auth.key_id(key.public_key())})


def test_jwt_checked_by_envoy_against_the_auth_jwks(upstreams, envoys, signing_key):
    import json as _json
    auth_upstream = upstreams("auth")
    auth_upstream.routes[JWKS_PATH] = (200, _json.dumps(cm_auth.jwks_for(signing_key.public_key())))
    app = upstreams("app")
    routes = [http_route("app", [{"matches": [{"path": {"type": "PathPrefix", "value": "/api/orders"}}],
                                  "backendRefs": [{"name": "app"}]}]),
              http_route("auth", [{"matches": [{"path": {"type": "PathPrefix", "value": "/api/auth"}}],
                                   "backendRefs": [{"name": "auth"}]}])]
    issuer = kong.JwtIssuer("cloudmart-auth", "auth", "http://auth" + JWKS_PATH)
    built = build.gateway(routes, {"app": [ep(app)], "auth": [ep(auth_upstream)]}, issuer=issuer)
    proxy = envoys(built.plane, "jwt")
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        ok = client.get("/api/orders", headers={"authorization": f"Bearer {_token(signing_key, roles=('customer', 'admin'))}"})
        assert ok.status_code == 200
        seen = ok.json()["headers"]
        assert seen["x-user-id"] == "alice"
        assert seen["x-user-roles"] == "customer,admin"
        assert seen["x-forwarded-for"] == "127.0.0.1"
        # A token signed by another key, an expired one, another issuer: Envoy answers 401 itself.
        forged = pyjwt.encode({"iss": "cloudmart-auth", "sub": "mallory", "exp": int(time.time()) + 60}, other_key,
                              algorithm="RS256", headers={"kid": cm_auth.key_id(signing_key.public_key())})
        for bad in (forged, _token(signing_key, exp_in=-120), _token(signing_key, iss="someone-else")):
            assert client.get("/api/orders", headers={"authorization": f"Bearer {bad}"}).status_code == 401
        # No token passes (the services decide what needs a user), but a spoofed identity is dropped.
        anon = client.get("/api/orders", headers={"x-user-id": "admin", "x-user-roles": "admin"})
        assert anon.status_code == 200
        assert "x-user-id" not in anon.json()["headers"] and "x-user-roles" not in anon.json()["headers"]
    hits_before = app.hits
    assert hits_before == 2          # the three bad tokens never reached the service
    assert proxy.stats()["http.gateway.jwt_authn.denied"] == 3


def test_kong_jwt_without_anonymous_requires_a_token_except_where_not_attached(upstreams, envoys, signing_key):
    import json as _json
    auth_upstream = upstreams("auth")
    auth_upstream.routes[JWKS_PATH] = (200, _json.dumps(cm_auth.jwks_for(signing_key.public_key())))
    app = upstreams("app")
    plugin = {"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin", "metadata": {"name": "jwt"},
              "plugin": "jwt", "config": {"key_claim_name": "iss", "claims_to_verify": ["exp"]}}
    routes = [http_route("app", [{"matches": [{"path": {"type": "PathPrefix", "value": "/api/orders"}}],
                                  "backendRefs": [{"name": "app"}]}], {"konghq.com/plugins": "jwt"}),
              http_route("auth", [{"matches": [{"path": {"type": "PathPrefix", "value": "/api/auth"}}],
                                   "backendRefs": [{"name": "auth"}]}], {"konghq.com/plugins": ""})]
    issuer = kong.JwtIssuer("cloudmart-auth", "auth", "http://auth" + JWKS_PATH)
    built = build.gateway(routes + [plugin], {"app": [ep(app)], "auth": [ep(auth_upstream)]}, issuer=issuer)
    assert built.report.status("jwt", "config.anonymous") == "honoured"
    proxy = envoys(built.plane, "kongjwt")
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        assert client.get("/api/orders").status_code == 401
        good = client.get("/api/orders", headers={"authorization": f"Bearer {_token(signing_key)}"})
        assert good.status_code == 200
        assert good.json()["headers"]["x-consumer-username"] == "cloudmart-auth"
        assert client.get("/api/auth/token").status_code == 200     # jwt not attached to this route


def test_fault_abort_and_delay_from_a_virtual_service(upstreams, envoys):
    app = upstreams("app")
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "app"},
          "spec": {"hosts": ["app"], "http": [
              {"match": [{"uri": {"prefix": "/slow"}}], "fault": {"delay": {"fixedDelay": "0.3s", "percentage": {"value": 100}}},
               "route": [{"destination": {"host": "app"}}]},
              {"fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}},
               "route": [{"destination": {"host": "app"}}]}]}}
    _, routes = istio.virtual_service(vs, {"app"})
    routes = [build._renamed(r) for r in routes]
    plane = m.DataPlane([m.Listener("gateway", (m.VirtualHost("app", routes=tuple(routes)),), faults=True)],
                        [m.Cluster(build.outbound("app"), (ep(app),))])
    proxy = envoys(plane, "fault")
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        assert [client.get("/x").status_code for _ in range(5)] == [418] * 5
        t0 = time.perf_counter()
        assert client.get("/slow").status_code == 200
        # Envoy's timers run on its loop's cached clock: a 300 ms delay can end a fraction of a ms early.
        assert time.perf_counter() - t0 >= 0.295
    assert app.hits == 1


def test_live_apply_changes_weights_without_failed_requests(upstreams, envoys):
    stable, canary = upstreams("stable"), upstreams("canary")

    def plane(weight: int):
        route = http_route("product", [{"backendRefs": [{"name": "product", "weight": 100 - weight},
                                                        {"name": "product-canary", "weight": weight}]}])
        return build.gateway([route], {"product": [ep(stable)], "product-canary": [ep(canary)]}).plane

    proxy = envoys(plane(0), "apply")
    url = gateway_url(proxy)
    codes: list[int] = []
    stop = threading.Event()

    def load():
        with httpx.Client(base_url=url, timeout=5) as c:
            while not stop.is_set():
                try:
                    codes.append(c.get("/x").status_code)
                except httpx.HTTPError:
                    codes.append(0)
    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for weight in (20, 50, 100, 0, 100):
            proxy.apply(plane(weight))
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert len(codes) > 50
    assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    with httpx.Client(base_url=url) as c:
        assert {c.get("/x").json()["name"] for _ in range(20)} == {"canary"}


def test_a_config_envoy_refuses_is_not_applied_and_the_old_one_keeps_serving(upstreams, envoys):
    app = upstreams("app")
    good = m.DataPlane([m.Listener("gateway", (m.VirtualHost("all", routes=(
        m.Route("all", m.RouteMatch("/"), clusters=(m.WeightedCluster("app", 1),)),)),))],
        [m.Cluster("app", (ep(app),))])
    proxy = envoys(good, "keep")
    bad = m.DataPlane([m.Listener("gateway", (m.VirtualHost("all", routes=(
        m.Route("all", m.RouteMatch("/(", "regex"), clusters=(m.WeightedCluster("app", 1),)),)),))],
        [m.Cluster("app", (ep(app),))])
    with pytest.raises(EnvoyConfigError, match=r"missing \)"):
        proxy.apply(bad)
    with httpx.Client(base_url=gateway_url(proxy)) as c:
        assert c.get("/anything").status_code == 200
    assert proxy.plane is good


# -- the mesh: SPIFFE identities, PeerAuthentication, AuthorizationPolicy ---------------------------

def _client(ca: MeshCA, identity) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(ca.ca_file))
    ctx.load_cert_chain(identity.cert_file, identity.key_file)
    return httpx.Client(verify=ctx, timeout=5)


def _policies(mode: str) -> list[dict]:
    return [
        {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default"},
         "spec": {"mtls": {"mode": mode}}},
        {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "allow-nothing"},
         "spec": {}},
        {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "order-to-payment"},
         "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "payment"}}, "action": "ALLOW",
                  "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/cloudmart/sa/order"]}}],
                             "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/api/payments*"]}}]}]}},
        {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "no-refunds"},
         "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/api/payments/refund"]}}]}]}},
    ]


def _payment_sidecar(tmp_path, objects, app, mode_label="payment"):
    ca = MeshCA(tmp_path / "ca")
    ident = ca.issue("payment-0", "payment")
    identity = build.MeshIdentity(ident.ca_file, ident.cert_file, ident.key_file)
    w = build.Workload("payment", {"app.kubernetes.io/name": mode_label}, m.Endpoint(port=app.port))
    return ca, build.sidecar(objects, w, identity, {}, {"payment", "order", "notification"})


def test_strict_mtls_and_rbac_by_spiffe_identity(tmp_path, upstreams, envoys):
    app = upstreams("payment")
    ca, plane = _payment_sidecar(tmp_path, _policies("STRICT"), app)
    proxy = envoys(plane, "payment-0")
    url = f"https://127.0.0.1:{proxy.ports()['inbound']}"
    with _client(ca, ca.issue("order-0", "order")) as order, _client(ca, ca.issue("notification-0", "notification")) as notif:
        r = order.get(url + "/api/payments/1")
        assert r.status_code == 200
        # The workload learns who called: the caller's SPIFFE id in x-forwarded-client-cert.
        assert "spiffe://cloudmart.local/ns/cloudmart/sa/order" in r.json()["headers"]["x-forwarded-client-cert"]
        assert order.post(url + "/api/payments").status_code == 200
        assert order.delete(url + "/api/payments/1").status_code == 403      # method not allowed
        assert order.get(url + "/api/payments/refund").status_code == 403    # DENY before ALLOW
        assert notif.get(url + "/api/payments/1").status_code == 403         # wrong identity
    # Plaintext to a STRICT listener never reaches the service.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{proxy.ports()['inbound']}/api/payments/1", timeout=3)
    # A client certificate from another CA is refused in the handshake.
    other = MeshCA(tmp_path / "other-ca")
    ctx = ssl.create_default_context(cafile=str(ca.ca_file))
    rogue = other.issue("order-x", "order")
    ctx.load_cert_chain(rogue.cert_file, rogue.key_file)
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/api/payments/1", verify=ctx, timeout=3)
    stats = proxy.stats()
    rbac = {k: v for k, v in stats.items() if "rbac" in k}
    assert rbac.get("http.inbound.rbac.allow.denied") == 2 and rbac.get("http.inbound.rbac.deny.denied") == 1, rbac
    assert app.hits == 2


def test_permissive_accepts_plaintext_and_counts_it(tmp_path, upstreams, envoys):
    app = upstreams("payment")
    objects = [_policies("PERMISSIVE")[0]]        # no authorization policies: all allowed
    ca, plane = _payment_sidecar(tmp_path, objects, app)
    proxy = envoys(plane, "payment-0")
    port = proxy.ports()["inbound"]
    assert httpx.get(f"http://127.0.0.1:{port}/api/payments/1").status_code == 200
    with _client(ca, ca.issue("order-0", "order")) as order:
        assert order.get(f"https://127.0.0.1:{port}/api/payments/1").status_code == 200
    stats = proxy.stats()
    assert stats["http.inbound_plain.downstream_rq_total"] == 1
    assert stats["http.inbound.downstream_rq_total"] == 1


def test_sidecar_to_sidecar_mtls_verifies_the_peer_spiffe_id(tmp_path, upstreams, envoys):
    """order's outbound listener → payment's inbound listener over mTLS, both generated."""
    app = upstreams("payment")
    ca, payment_plane = _payment_sidecar(tmp_path, _policies("STRICT"), app)
    payment = envoys(payment_plane, "payment-0")
    payment_ep = m.Endpoint(port=payment.ports()["inbound"])
    order_ident = ca.issue("order-0", "order")
    order_identity = build.MeshIdentity(order_ident.ca_file, order_ident.cert_file, order_ident.key_file)
    services = {"payment", "order", "notification"}
    order_w = build.Workload("order", {"app.kubernetes.io/name": "order"}, m.Endpoint(port=1))
    order = envoys(build.sidecar(_policies("STRICT"), order_w, order_identity,
                                 {"payment": (0, [payment_ep])}, services), "order-0")
    out = f"http://127.0.0.1:{order.ports()['outbound-payment']}"
    assert httpx.get(out + "/api/payments/7").json()["name"] == "payment"
    # The same call from notification's sidecar is denied by payment's RBAC.
    n_ident = ca.issue("notification-0", "notification")
    n_w = build.Workload("notification", {"app.kubernetes.io/name": "notification"}, m.Endpoint(port=1))
    notif = envoys(build.sidecar(_policies("STRICT"), n_w, build.MeshIdentity(n_ident.ca_file, n_ident.cert_file,
                                                                             n_ident.key_file),
                                 {"payment": (0, [payment_ep])}, services), "notification-0")
    assert httpx.get(f"http://127.0.0.1:{notif.ports()['outbound-payment']}/api/payments/7").status_code == 403
    # `proxy-config`: what this sidecar runs, read back from Envoy itself.
    clusters = {row["name"]: row for row in order.proxy_config("clusters")}
    assert clusters["outbound|80||payment"]["mtls"] and clusters["outbound|80||payment"]["endpoints"] == [
        f"127.0.0.1:{payment_ep.port}"]
    listeners = {row["name"]: row for row in payment.proxy_config("listeners")}
    assert listeners["inbound"]["tls"] == "STRICT"
    assert [f.split(".")[4] for f in listeners["inbound"]["http_filters"] if ".rbac." in f] == ["deny", "allow"]
    routes = order.proxy_config("routes")
    assert any(r["to"] == "outbound|80||payment" and r["retries"] == 2 for r in routes)   # Istio's default retries
    secrets = {row["name"]: row for row in order.proxy_config("secrets")}
    assert secrets["mesh-identity"]["spiffe"] == ["spiffe://cloudmart.local/ns/cloudmart/sa/order"]
    assert secrets["mesh-ca"]["type"] == "CA"
    with pytest.raises(ValueError, match="expected one of listeners, routes, clusters, secrets"):
        order.proxy_config("endpoints")
    # A peer presenting another identity than payment's is refused by the caller's SAN check.
    impostor_plane = build.sidecar(_policies("STRICT"), order_w, order_identity,
                                   {"order": (0, [payment_ep])}, services)
    impostor = envoys(impostor_plane, "order-1")
    assert httpx.get(f"http://127.0.0.1:{impostor.ports()['outbound-order']}/x").status_code == 503
    assert impostor.stats()["cluster.outbound|80||order.ssl.fail_verify_san"] >= 1


def _peer_serial(port: int, ca: MeshCA, identity) -> int:
    import socket
    from cryptography import x509
    ctx = ssl.create_default_context(cafile=str(ca.ca_file))
    ctx.load_cert_chain(identity.cert_file, identity.key_file)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_certificate_rotation_by_sds_under_load_fails_no_request(tmp_path, upstreams, envoys):
    """New workload certificates reach both sidecars by file-based SDS while calls keep flowing."""
    app = upstreams("payment")
    ca = MeshCA(tmp_path / "ca")
    services = {"payment", "order", "notification"}

    def identity(name, service):
        t = ca.issue(name, service)
        return build.MeshIdentity(t.ca_file, t.cert_file, t.key_file)
    pay_w = build.Workload("payment", {"app.kubernetes.io/name": "payment"}, m.Endpoint(port=app.port))
    payment = envoys(build.sidecar(_policies("STRICT"), pay_w, identity("payment-0", "payment"), {}, services),
                     "payment-0")
    pay_port = payment.ports()["inbound"]
    order_w = build.Workload("order", {"app.kubernetes.io/name": "order"}, m.Endpoint(port=1))

    def order_plane(ident):
        return build.sidecar(_policies("STRICT"), order_w, ident, {"payment": (0, [m.Endpoint(port=pay_port)])}, services)
    order = envoys(order_plane(identity("order-0", "order")), "order-0")
    url = f"http://127.0.0.1:{order.ports()['outbound-payment']}/api/payments/1"
    probe = ca.issue("order-probe", "order")
    before = _peer_serial(pay_port, ca, probe)
    codes: list[int] = []
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=5) as c:
            while not stop.is_set():
                try:
                    codes.append(c.get(url).status_code)
                except httpx.HTTPError:
                    codes.append(0)
    def calls_flow(n=15, timeout_s=30.0):
        """Wait until `n` more calls have completed (by count, not by time: a loaded machine is slow)."""
        mark, deadline = len(codes), time.monotonic() + timeout_s
        while len(codes) < mark + n and time.monotonic() < deadline and worker.is_alive():
            time.sleep(0.02)
        return len(codes) - mark
    worker = threading.Thread(target=load)
    worker.start()
    per_phase = []
    try:
        for generation in (1, 2):
            per_phase.append(calls_flow())
            payment.apply(build.sidecar(_policies("STRICT"), pay_w, identity(f"payment-0-r{generation}", "payment"),
                                        {}, services))
            order.apply(order_plane(identity(f"order-0-r{generation}", "order")))
        per_phase.append(calls_flow())
    finally:
        stop.set()
        worker.join(10)
    after = _peer_serial(pay_port, ca, probe)
    assert after != before, "payment's sidecar still presents the old certificate"
    assert min(per_phase) >= 15, f"calls completed before, between and after the rotations: {per_phase}"
    assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}


def test_a_replica_on_a_unix_socket_behind_its_sidecar(tmp_path, envoys):
    """In mesh mode the replica can listen on a Unix socket: only its sidecar can reach it."""
    import socketserver
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"via": "unix"}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

        def get_request(self):     # BaseHTTPRequestHandler wants a (host, port) client address
            request, _ = super().get_request()
            return request, ("unix", 0)

    sock = tmp_path / "replica.sock"
    server = UnixHTTPServer(str(sock), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ca = MeshCA(tmp_path / "ca")
        t = ca.issue("payment-0", "payment")
        w = build.Workload("payment", {}, m.Endpoint(pipe=str(sock)))
        plane = build.sidecar([_policies("PERMISSIVE")[0]], w, build.MeshIdentity(t.ca_file, t.cert_file, t.key_file),
                              {}, {"payment"})
        proxy = envoys(plane, "payment-uds")
        assert httpx.get(f"http://127.0.0.1:{proxy.ports()['inbound']}/x").json() == {"via": "unix"}
    finally:
        server.shutdown()
        server.server_close()


def test_prometheus_stats_are_envoys_own_names(upstreams, envoys):
    app = upstreams("app")
    route = http_route("app", [{"backendRefs": [{"name": "app"}]}])
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "app"},
          "spec": {"host": "app", "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 5}}}}
    proxy = envoys(build.gateway([route, dr], {"app": [ep(app)]}).plane, "prom")
    httpx.get(gateway_url(proxy) + "/x")
    text = proxy.prometheus()
    for name in ("envoy_cluster_upstream_rq_pending_overflow", "envoy_cluster_outlier_detection_ejections_enforced_total",
                 "envoy_cluster_upstream_rq_retry", "envoy_http_downstream_rq_total"):
        assert f"\n{name}{{" in text or text.startswith(f"{name}{{"), name
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="outbound|80||app"} 1' in text


def test_gateway_starts_before_the_auth_service_and_picks_up_its_keys(upstreams, envoys, signing_key):
    """JWKS not served yet at start-up: the gateway listens anyway and checks tokens once it is."""
    import json as _json
    auth_upstream = upstreams("auth")
    auth_upstream.routes[JWKS_PATH] = (503, '{"detail": "starting"}')
    app = upstreams("app")
    routes = [http_route("app", [{"backendRefs": [{"name": "app"}]}])]
    issuer = kong.JwtIssuer("cloudmart-auth", "auth", "http://auth" + JWKS_PATH)
    t0 = time.monotonic()
    proxy = envoys(build.gateway(routes, {"app": [ep(app)], "auth": [ep(auth_upstream)]}, issuer=issuer).plane, "early")
    assert time.monotonic() - t0 < 5
    headers = {"authorization": f"Bearer {_token(signing_key)}"}
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        assert client.get("/x").status_code == 200                # no token: no keys needed
        assert client.get("/x", headers=headers).status_code == 401   # cannot check it yet: refused
        auth_upstream.routes[JWKS_PATH] = (200, _json.dumps(cm_auth.jwks_for(signing_key.public_key())))
        deadline = time.monotonic() + 10
        while client.get("/x", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "the gateway never fetched the keys again"
            time.sleep(0.2)
        assert client.get("/x", headers=headers).json()["headers"]["x-user-id"] == "alice"
    assert proxy.stats()["http.gateway.jwt_authn.jwks_fetch_failed"] >= 1


def test_canary_weight_override_and_in_cluster_listeners(upstreams, envoys):
    """What the supervisor needs: `canary(product, W)` weights, and a plain listener per Service."""
    stable, canary = upstreams("stable"), upstreams("canary")
    route = http_route("product", [{"backendRefs": [{"name": "product", "weight": 100},
                                                    {"name": "product-canary", "weight": 0}]}])
    endpoints = {"product": [ep(stable)], "product-canary": [ep(canary)]}
    proxy = envoys(build.gateway([route], endpoints, weights={"product": 0, "product-canary": 100},
                                 cluster_ports={"product": 0}).plane, "canary")
    with httpx.Client() as c:
        assert {c.get(gateway_url(proxy) + "/x").json()["name"] for _ in range(10)} == {"canary"}
        # The in-cluster listener of product skips the edge: it reaches product's replicas only.
        in_cluster = f"http://127.0.0.1:{proxy.ports()['cluster-product']}/x"
        assert {c.get(in_cluster).json()["name"] for _ in range(10)} == {"stable"}
    with pytest.raises(ValueError, match=r"weights.product: -5 is not an integer in 0..1000000"):
        build.gateway([route], endpoints, weights={"product": -5})


def test_kong_request_transformer_and_cors(upstreams, envoys, signing_key):
    app = upstreams("app")
    transformer = {"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin", "metadata": {"name": "rt"},
                   "plugin": "request-transformer", "config": {
                       "remove": {"headers": ["x-debug"]}, "replace": {"headers": ["x-tier:gold", "x-absent:nope"]},
                       "add": {"headers": ["x-env:lab", "x-tier:never"]}, "append": {"headers": ["x-trace:gw"]},
                       "rename": {"headers": ["x-old:x-new"]}}}
    cors = {"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin", "metadata": {"name": "cors"},
            "plugin": "cors", "config": {"origins": ["https://shop.example"], "methods": ["GET", "POST"],
                                         "headers": ["authorization"], "max_age": 600, "credentials": True}}
    jwt_plugin = {"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin", "metadata": {"name": "jwt"},
                  "plugin": "jwt", "config": {}}
    route = http_route("app", [{"backendRefs": [{"name": "app"}]}], {"konghq.com/plugins": "rt,cors,jwt"})
    issuer = kong.JwtIssuer("cloudmart-auth", "auth", "http://auth" + JWKS_PATH)
    built = build.gateway([route, transformer, cors, jwt_plugin], {"app": [ep(app)], "auth": [ep(app)]}, issuer=issuer)
    assert built.report.status("rt", "config.rename.headers") == "unsupported"
    assert built.report.status("cors", "config.max_age") == "honoured"
    proxy = envoys(built.plane, "rt")
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        # A preflight is answered by Envoy before the JWT check (no token needed).
        pre = client.options("/x", headers={"origin": "https://shop.example", "access-control-request-method": "POST"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://shop.example"
        assert pre.headers["access-control-max-age"] == "600"
        assert pre.headers["access-control-allow-credentials"] == "true"
        foreign = client.options("/x", headers={"origin": "https://evil.example", "access-control-request-method": "POST"})
        assert "access-control-allow-origin" not in foreign.headers
        hits = app.hits
        token = {"authorization": f"Bearer {_token(signing_key)}"}
        assert client.get("/x").status_code == 401                       # jwt without anonymous
        assert app.hits == hits
        auth_routes = app.routes
        auth_routes[JWKS_PATH] = (200, __import__("json").dumps(cm_auth.jwks_for(signing_key.public_key())))
        deadline = time.monotonic() + 10
        while (resp := client.get("/x", headers={**token, "x-debug": "1", "x-tier": "bronze", "x-trace": "client"})).status_code != 200:
            assert time.monotonic() < deadline, resp.status_code
            time.sleep(0.2)
    seen = resp.json()["headers"]
    assert "x-debug" not in seen                     # removed
    assert seen["x-tier"] == "gold"                  # replaced (present), and `add` did not touch it
    assert "x-absent" not in seen                    # replace only where present
    assert seen["x-env"] == "lab"                    # added where absent
    assert seen["x-trace"] == "client,gw"            # appended: a second x-trace header, as Kong's append


def test_mirror_rewrite_method_and_query_matches(upstreams, envoys):
    main, shadow, admin = upstreams("main"), upstreams("shadow"), upstreams("admin")
    route = http_route("shop", [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api/orders"}, "method": "DELETE"}],
         "backendRefs": [{"name": "admin"}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api/orders"},
                      "queryParams": [{"name": "debug", "value": "1"}]}],
         "backendRefs": [{"name": "admin"}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api/orders"}}],
         "backendRefs": [{"name": "main"}],
         "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow"}}},
                     {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                                    "replacePrefixMatch": "/v2/orders"}}}]}])
    proxy = envoys(build.gateway([route], {"main": [ep(main)], "shadow": [ep(shadow)], "admin": [ep(admin)]}).plane,
                   "mirror")
    with httpx.Client(base_url=gateway_url(proxy)) as client:
        got = client.get("/api/orders/7").json()
        assert (got["name"], got["path"]) == ("main", "/v2/orders/7")
        assert client.delete("/api/orders/7").json()["name"] == "admin"
        assert client.get("/api/orders/7?debug=1").json()["name"] == "admin"
        assert client.get("/api/orders/7?debug=0").json()["name"] == "main"
    deadline = time.monotonic() + 5
    while shadow.hits < 2 and time.monotonic() < deadline:      # mirrored copies are fire-and-forget
        time.sleep(0.05)
    assert shadow.hits == 2 and main.hits == 2
    # Envoy marks the mirrored copy's Host with a -shadow suffix.
    assert all(s["headers"]["host"].split(":")[0].endswith("-shadow") for s in shadow.seen)


def test_a_listener_change_keeps_its_port_and_drops_no_request(upstreams, envoys):
    """A new HTTP filter changes the listener itself (LDS), not just routes: Envoy updates its
    filter chains in place, on the same socket, even for a port the kernel picked."""
    app = upstreams("app")
    route = http_route("app", [{"backendRefs": [{"name": "app"}]}], {"konghq.com/plugins": ""})
    plugin = {"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin", "metadata": {"name": "rl"},
              "plugin": "rate-limiting", "config": {"hour": 100000, "limit_by": "ip"}}
    limited = http_route("app", [{"backendRefs": [{"name": "app"}]}], {"konghq.com/plugins": "rl"})
    proxy = envoys(build.gateway([route], {"app": [ep(app)]}).plane, "lds")
    port = proxy.ports()["gateway"]
    codes: list[int] = []
    stop = threading.Event()

    def load():
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            while not stop.is_set():
                try:
                    codes.append(c.get("/x").status_code)
                except httpx.HTTPError:
                    codes.append(0)
    worker = threading.Thread(target=load)
    worker.start()
    try:
        for objects in ([limited, plugin], [route], [limited, plugin]):
            time.sleep(0.3)
            proxy.apply(build.gateway(objects, {"app": [ep(app)]}).plane)
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(10)
    assert proxy.ports()["gateway"] == port
    assert len(codes) > 30 and set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    assert httpx.get(f"http://127.0.0.1:{port}/x").headers["x-ratelimit-limit"] == "100000"
