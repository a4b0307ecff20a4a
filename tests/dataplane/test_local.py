"""The local target's gateway config (`dataplane.local.render`) and endpoint updates over EDS."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import httpx
import pytest

from cluster import topology
from cluster.dataplane import envoy, local
from cluster.dataplane import model as m
from cluster.dataplane.errors import ResourceError


@pytest.fixture(scope="module")
def topo():
    return topology.load()


def _endpoints(topo, port: int = 20000) -> dict[str, list[str]]:
    return {svc: [f"127.0.0.1:{port + i}"] for i, svc in enumerate(sorted(topo.services))}


def test_render_adds_the_edge_policy_to_the_manifests_routes(topo):
    plane = local.render(topo, endpoints=_endpoints(topo), port=18999, cluster_ports={"product": 19001})
    gw = plane.listener("gateway")
    assert gw.port == 18999 and gw.json_errors and gw.max_request_bytes == local.MAX_BODY_BYTES
    assert gw.jwt is not None and gw.jwt.allow_missing
    assert gw.jwt.providers[0].jwks_uri == "http://auth/api/auth/.well-known/jwks.json"
    (limit,) = gw.rate_limits
    assert limit.key == "header:x-user-id" and limit.max_tokens == 2000 and limit.tokens_per_fill == 100
    assert set(gw.strip_headers) >= {"x-user-id", "x-user-roles"}
    routes = {r.name.split(".")[0]: r for r in gw.virtual_hosts[0].routes}
    assert {"auth", "order", "product", "user"} <= set(routes)
    # HTTPRoutes without a retry of their own get Istio's default, to another host; their
    # backendRequest timeout stays the per-try timeout.
    order = routes["order"]
    assert order.retry.attempts == 2 and order.retry.retry_other_hosts and 503 in order.retry.retriable_status_codes
    assert "reset" in order.retry.retry_on and order.retry.per_try_timeout_s == 15.0 and order.timeout_s == 15.0
    # The per-Service balancer: same endpoints, no edge policy.
    balancer = plane.listener("cluster-product")
    assert balancer.port == 19001 and balancer.jwt is None and not balancer.rate_limits
    assert plane.cluster("outbound|80||product").endpoints == (m.Endpoint("127.0.0.1", 20000 + sorted(topo.services).index("product")),)


def test_render_takes_applied_objects_and_refuses_bad_ones(topo):
    extra = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "product"},
             "spec": {"host": "product", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 7}}}}}
    plane = local.render(topo, [extra], endpoints=_endpoints(topo))
    assert plane.cluster("outbound|80||product").circuit_breaker.max_connections == 7
    bad = {**extra, "spec": {"host": "product", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 0}}}}}
    with pytest.raises(ResourceError, match="DestinationRule product: .*maxConnections"):
        local.render(topo, [bad], endpoints=_endpoints(topo))
    with pytest.raises(ValueError, match="rate limit"):
        local.render(topo, endpoints=_endpoints(topo), rate=(0, 10))


def test_running_config_has_endpoints_inline_and_one_shared_route_configuration(topo, tmp_path):
    """Few watched files per Envoy (each costs an inotify instance): endpoints inline in CDS, the
    gateway listener's routes in the one RDS file, the per-Service balancers' routes inline."""
    plane = local.render(topo, endpoints=_endpoints(topo), cluster_ports={s: 20000 + i for i, s in
                                                                          enumerate(sorted(topo.services))})
    files = envoy.xds_files(plane, str(tmp_path))
    assert sorted(files) == ["cds.json", "lds.json", envoy.RDS_FILE]
    cds = {c["name"]: c for c in files["cds.json"]["resources"]}
    product = cds["outbound|80||product"]
    assert product["type"] == "STATIC" and product["load_assignment"]["endpoints"][0]["lb_endpoints"]
    lds = {l["name"]: l for l in files["lds.json"]["resources"]}
    hcm = lambda l: l["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm(lds["gateway"])["rds"]["route_config_name"] == envoy.ROUTES_NAME
    assert hcm(lds["gateway"])["rds"]["config_source"]["path_config_source"]["path"] == f"{tmp_path}/{envoy.RDS_FILE}"
    balancers = [name for name in lds if name.startswith("cluster-")]
    assert len(balancers) == len(topo.services) and all("route_config" in hcm(lds[n]) for n in balancers)
    # What `envoy --mode validate` checks has the same endpoints.
    static = {c["name"]: c for c in envoy.static_bootstrap(plane)["static_resources"]["clusters"]}
    assert static["outbound|80||product"]["load_assignment"] == product["load_assignment"]


def test_a_sidecars_outbound_listeners_share_one_route_configuration(tmp_path):
    from cluster.dataplane import build

    ident = _identity(tmp_path)
    services = {"payment", "inventory", "order"}
    w = build.Workload("order", {"app.kubernetes.io/name": "order"}, m.Endpoint(port=1), inbound_port=20100)
    peers = {"payment": (20101, [m.Endpoint(port=20201)]), "inventory": (20102, [m.Endpoint(port=20202)])}
    files = envoy.xds_files(build.sidecar([], w, ident, peers, services), str(tmp_path))
    # One RDS, one SDS per secret: nothing per listener or per cluster.
    assert sorted(files) == ["cds.json", "lds.json", envoy.RDS_FILE, "sds-mesh-ca.json", "sds-mesh-identity.json"]
    hosts = {vh["name"]: vh["domains"] for vh in files[envoy.RDS_FILE]["resources"][0]["virtual_hosts"]}
    assert hosts == {"outbound-payment:payment": ["*:20101"], "outbound-inventory:inventory": ["*:20102"]}
    lds = {l["name"]: l["filter_chains"][0]["filters"][0]["typed_config"] for l in files["lds.json"]["resources"]}
    assert "route_config" in lds["inbound"] and all("rds" in lds[f"outbound-{p}"] for p in peers)


def _stat(proxy, name: str) -> int:
    return int(proxy.stats().get(name, 0))


def test_an_endpoint_change_replaces_only_that_cluster_and_drops_no_request(upstreams, envoys):
    """Moving a cluster from one replica to another under load: Envoy replaces that cluster only
    (cluster_modified rises by one per change, the other cluster is untouched), and every request
    is answered 200."""
    a, b, o = upstreams("a"), upstreams("b"), upstreams("other")
    c = lambda *ups: m.Cluster("outbound|80||svc", tuple(m.Endpoint(port=u.port) for u in ups), idle_timeout_s=4.0)
    other = m.Cluster("outbound|80||other", (m.Endpoint(port=o.port),), idle_timeout_s=4.0)
    route = m.Route("r", m.RouteMatch("/"), clusters=(m.WeightedCluster("outbound|80||svc", 1),), retry=local.GATEWAY_RETRY)
    plane = lambda *ups: m.DataPlane([m.Listener("l", (m.VirtualHost("v", routes=(route,)),), json_errors=True)],
                                     [c(*ups), other])
    proxy = envoys(plane(a), "eds")
    url = f"http://127.0.0.1:{proxy.ports()['l']}/x"
    modified = _stat(proxy, "cluster_manager.cluster_modified")
    codes: list[int] = []
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                codes.append(client.get(url).status_code)
                time.sleep(0.005)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        for step in (plane(a, b), plane(b), plane(a), plane(a, b)):
            time.sleep(0.3)
            proxy.apply(step)
    finally:
        stop.set()
        thread.join()
    assert len(codes) > 20 and set(codes) == {200}, {code: codes.count(code) for code in set(codes)}
    assert _stat(proxy, "cluster_manager.cluster_modified") == modified + 4, "one cluster replaced per change"
    assert _stat(proxy, "cluster_manager.cluster_added") == 2
    assert a.hits > 0 and b.hits > 0


def test_no_endpoint_or_a_refused_one_is_a_json_503(upstreams, envoys, tmp_path):
    import socket

    with socket.socket() as s:             # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    empty = m.Cluster("outbound|80||empty", ())
    refused = m.Cluster("outbound|80||dead", (m.Endpoint(port=dead),))
    routes = (m.Route("e", m.RouteMatch("/empty"), clusters=(m.WeightedCluster(empty.name, 1),), retry=local.GATEWAY_RETRY),
              m.Route("d", m.RouteMatch("/dead"), clusters=(m.WeightedCluster(refused.name, 1),), retry=local.GATEWAY_RETRY))
    proxy = envoys(m.DataPlane([m.Listener("l", (m.VirtualHost("v", routes=routes),), json_errors=True)],
                               [empty, refused]), "503")
    base = f"http://127.0.0.1:{proxy.ports()['l']}"
    for path, cluster in (("/empty", empty.name), ("/dead", refused.name)):
        resp = httpx.get(base + path)
        assert resp.status_code == 503, (path, resp.status_code, resp.text)
        assert resp.headers["content-type"] == "application/json" and resp.headers["retry-after"] == "1"
        assert resp.json()["detail"] == f"no ready replica of {cluster} could take the request"


def _identity(tmp_path):
    from cluster.dataplane.build import MeshIdentity
    from cluster.mesh import MeshCA

    tls = MeshCA(tmp_path / "mesh").issue("order-0", "order")
    return MeshIdentity(tls.ca_file, tls.cert_file, tls.key_file)


def test_render_sidecar_is_strict_by_default_and_takes_applied_policies(topo, tmp_path):
    labels = {"app.kubernetes.io/name": "order"}
    kw = dict(service="order", labels=labels, app="127.0.0.1:21000", inbound_port=21001,
              identity=_identity(tmp_path), peers={"product": (21002, ["127.0.0.1:21003"])})
    plane = local.render_sidecar(topo, **kw)
    inbound = plane.listener("inbound")
    assert inbound.port == 21001 and inbound.tls.mode == "STRICT" and not inbound.rbac
    assert plane.cluster("inbound|8080||order").endpoints == (m.Endpoint("127.0.0.1", 21000),)
    assert plane.listener("outbound-product").port == 21002
    peer = plane.cluster("outbound|80||product")
    assert peer.tls.peer_sans == ("spiffe://cloudmart.local/ns/cloudmart/sa/product",)
    assert peer.endpoints == (m.Endpoint("127.0.0.1", 21003),)
    permissive = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                  "metadata": {"name": "order", "namespace": "cloudmart"},
                  "spec": {"selector": {"matchLabels": labels}, "mtls": {"mode": "PERMISSIVE"}}}
    deny = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "no-notif"},
            "spec": {"action": "DENY", "rules": [{"from": [{"source": {"principals": [
                "cluster.local/ns/cloudmart/sa/notification"]}}]}]}}
    # HTTPRoutes and other non-Istio objects applied for the gateway are not a sidecar's business.
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "x"}, "spec": {}}
    plane = local.render_sidecar(topo, [permissive, deny, route], **kw)
    assert plane.listener("inbound").tls.mode == "PERMISSIVE"
    (rbac,) = plane.listener("inbound").rbac
    assert rbac.action == "DENY"


def test_a_deep_state_folder_still_gets_a_private_admin_socket(tmp_path):
    import os
    import stat

    from cluster.dataplane.proxy import EnvoyProxy

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    proxy = EnvoyProxy(deep / "sidecar-product-canary-0", "deep")
    plane = m.DataPlane([m.Listener("l", (m.VirtualHost("v", routes=(
        m.Route("r", m.RouteMatch("/"), direct_response=m.DirectResponse(200, "ok")),)),))], [])
    try:
        proxy.start(plane)
        assert len(proxy.admin_socket.encode()) <= 100
        assert stat.S_IMODE(os.stat(os.path.dirname(proxy.admin_socket)).st_mode) == 0o700
        assert proxy.admin("/ready").status_code == 200
    finally:
        proxy.stop()
    assert not os.path.exists(os.path.dirname(proxy.admin_socket))


def test_edge_check_refuses_a_revoked_token_and_fails_closed(upstreams, envoys):
    """ext_authz after jwt_authn: a verified token is also asked about at auth's /verify (which
    refuses a revoked one with its own JSON 401); a token Envoy's cached JWKS cannot verify is left
    to /verify; no token, no check; auth unreachable: JSON 503 with Retry-After, never a 500."""
    import json
    import socket

    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from cluster.dataplane import build, kong
    from services.common import auth as cm_auth

    key, unpublished = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))

    def token(k, sub="alice"):
        now = int(time.time())
        return pyjwt.encode({"iss": "cloudmart-auth", "aud": "cloudmart", "sub": sub, "cm_roles": "customer",
                             "iat": now, "exp": now + 300}, k, algorithm="RS256",
                            headers={"kid": cm_auth.key_id(k.public_key())})

    auth_up, app = upstreams("auth"), upstreams("app")
    auth_up.routes[local.JWKS_PATH] = (200, json.dumps(cm_auth.jwks_for(key.public_key())))
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "app"},
             "spec": {"parentRefs": [{"name": "cloudmart"}], "rules": [
                 {"matches": [{"path": {"type": "PathPrefix", "value": "/api/orders"}}], "backendRefs": [{"name": "app"}]}]}}
    issuer = kong.JwtIssuer("cloudmart-auth", "auth", "http://auth" + local.JWKS_PATH)

    def plane(auth_ep):
        built = build.gateway([route], {"app": [m.Endpoint(port=app.port)], "auth": [auth_ep]}, issuer=issuer).plane
        built.listeners = [replace(local.edge_check(built.listeners[0], "auth"), json_errors=True), *built.listeners[1:]]
        return built

    proxy = envoys(plane(m.Endpoint(port=auth_up.port)), "edge")
    url = f"http://127.0.0.1:{proxy.ports()['gateway']}/api/orders"
    checks = lambda: [s for s in auth_up.seen if s["path"] == local.VERIFY_PATH]
    assert httpx.get(url).status_code == 200 and checks() == []             # anonymous: not asked
    ok = httpx.post(url, json={"n": 1}, headers={"authorization": f"Bearer {token(key)}"})
    assert ok.status_code == 200 and ok.json()["headers"]["x-user-id"] == "alice"
    (check,) = checks()
    assert check["method"] == "POST" and check["headers"]["authorization"].startswith("Bearer ey")
    # auth refuses the token (its jti is revoked): its own answer reaches the client.
    auth_up.routes[local.VERIFY_PATH] = (401, '{"detail": "invalid token: revoked"}')
    hits = app.hits
    revoked = httpx.get(url, headers={"authorization": f"Bearer {token(key)}"})
    assert revoked.status_code == 401 and revoked.json() == {"detail": "invalid token: revoked"}
    # A key Envoy's JWKS cache does not hold yet: /verify decides (here it refuses; it would pass
    # a token of auth's new key).
    assert httpx.get(url, headers={"authorization": f"Bearer {token(unpublished)}"}).status_code == 401
    assert len(checks()) == 3 and app.hits == hits
    del auth_up.routes[local.VERIFY_PATH]
    assert httpx.get(url, headers={"authorization": f"Bearer {token(unpublished)}"}).status_code == 200
    # auth unreachable: fail closed, as JSON.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    proxy.apply(plane(m.Endpoint(port=dead)))
    down = httpx.get(url, headers={"authorization": f"Bearer {token(key)}"})
    assert down.status_code == 503 and down.headers.get("retry-after") == "1", (down.status_code, down.headers, down.text)
    assert down.headers["content-type"] == "application/json" and "auth" in down.json()["detail"]
    assert httpx.get(url).status_code == 200                                    # anonymous still served


def test_a_declared_body_over_1_mib_is_413_at_once_and_exactly_1_mib_passes(topo, upstreams, envoys):
    """The gateway's first route: a Content-Length over the limit is answered 413 (JSON) before
    the body is sent; exactly the limit reaches the service; without a length the buffer filter
    counts."""
    import socket

    app = upstreams("app")
    plane = local.render(topo, endpoints={svc: [f"127.0.0.1:{app.port}"] for svc in topo.services})
    assert plane.listener("gateway").virtual_hosts[0].routes[0].name == "body-too-large"
    proxy = envoys(plane, "body")
    port = proxy.ports()["gateway"]
    base = f"http://127.0.0.1:{port}/api/products"
    for declared, expected in ((local.MAX_BODY_BYTES + 1, 413), (10 ** 12, 413)):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            # Headers only: the answer must come without the body being sent.
            s.sendall(f"POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {declared}\r\n\r\n".encode())
            head = s.recv(4096).decode()
        assert head.startswith(f"HTTP/1.1 {expected} "), head
        assert "application/json" in head
    hits = app.hits
    exact = httpx.post(base, content=b"x" * local.MAX_BODY_BYTES, timeout=10)
    assert exact.status_code == 200 and app.hits == hits + 1
    chunked = httpx.post(base, content=iter([b"x" * 65536] * 17), timeout=10)   # 1 MiB + 64 KiB, no length
    assert chunked.status_code == 413 and chunked.headers["content-type"] == "application/json"
    assert app.hits == hits + 1
