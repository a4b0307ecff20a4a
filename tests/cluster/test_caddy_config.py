"""The Caddy configuration generated from the HTTPRoutes, checked by the real Caddy binary."""

from __future__ import annotations

import json
import subprocess

import pytest

from cluster import caddy, topology
from cluster.mesh import MeshCA
from cluster.supervisor import caddy_binary


@pytest.fixture(scope="module")
def topo():
    return topology.load()


def endpoints(topo, n=1):
    return {svc: [f"127.0.0.1:{20000 + 10 * i + j}" for j in range(n)] for i, svc in enumerate(topo.services)}


def routes_of(config):
    return config["apps"]["http"]["servers"]["gateway"]["routes"]


def caddy_validate(config, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run([caddy_binary(), "validate", "--config", str(path)], capture_output=True, text=True,
                          timeout=60, env={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path),
                                           "XDG_CONFIG_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_gateway_config_is_valid_caddy(topo, tmp_path):
    config = caddy.gateway_config(topo.rules, endpoints(topo), listen_port=18080, admin_port=18081,
                                  auth_service="auth", cluster_ports={"product": 18082})
    caddy_validate(config, tmp_path)


def test_forward_auth_guards_every_route_first(topo):
    routes = routes_of(caddy.gateway_config(topo.rules, endpoints(topo), listen_port=1, admin_port=2,
                                            auth_service="auth"))
    auth = routes[0]["handle"][0]
    assert "match" not in routes[0]
    assert auth["rewrite"] == {"method": "GET", "uri": "/api/auth/verify"}
    assert auth["upstreams"] == [{"dial": "127.0.0.1:20000"}]
    copied = json.dumps(auth["handle_response"])
    assert "X-User-Id" in copied and "X-User-Roles" in copied
    assert auth["handle_response"][0]["match"] == {"status_code": [2]}


def test_header_match_before_prefix_and_404_last(topo):
    routes = routes_of(caddy.gateway_config(topo.rules, endpoints(topo), listen_port=1, admin_port=2,
                                            auth_service="auth"))
    assert routes[1]["match"][0]["header"] == {"x-cloudmart-version": ["v2"]}
    assert routes[-1]["handle"][0]["status_code"] == 404


def test_canary_weight_zero_gets_no_upstream_and_weights_spread(topo):
    eps = endpoints(topo, n=2)
    rule = next(r for r in topo.rules if r.route == "product" and not r.headers)
    dials, weights = caddy._upstream_weights(rule, eps, {})
    assert dials == eps["product"] and len(set(weights)) == 1
    dials, weights = caddy._upstream_weights(rule, eps, {"product": 80, "product-canary": 20})
    assert dials == eps["product"] + eps["product-canary"]
    assert weights == [4, 4, 1, 1]   # 80/20 over two replicas each
    eps["product-canary"] = eps["product-canary"][:1]
    dials, weights = caddy._upstream_weights(rule, eps, {"product": 90, "product-canary": 10})
    assert weights == [9, 9, 2]      # 45 + 45 : 10


def test_route_without_ready_replica_answers_503(topo):
    eps = endpoints(topo)
    eps["order"] = []
    routes = routes_of(caddy.gateway_config(topo.rules, eps, listen_port=1, admin_port=2, auth_service="auth"))
    order = next(r for r in routes if r.get("match") and "/api/orders" in r["match"][0]["path"])
    assert order["handle"][0]["status_code"] == 503


def test_timeouts_health_and_retries(topo):
    routes = routes_of(caddy.gateway_config(topo.rules, endpoints(topo, n=2), listen_port=1, admin_port=2,
                                            auth_service="auth"))
    order = next(r for r in routes if r.get("match") and "/api/orders" in r["match"][0]["path"])["handle"][0]
    assert order["transport"]["response_header_timeout"] == 15 * caddy.NS
    assert order["health_checks"]["active"]["uri"] == "/healthz"
    assert order["health_checks"]["passive"]["max_fails"] >= 1
    assert order["load_balancing"]["try_duration"] > 0
    # Idle upstream connections close before the replica's (uvicorn's 5 s) keep-alive timeout.
    assert order["transport"]["keep_alive"]["idle_timeout"] < 5 * caddy.NS


def test_a_lone_upstream_has_no_health_checks_but_keeps_retries(topo, tmp_path):
    """With one replica (or the monolith behind every route) there is nothing to fail over to: a
    health check could only mark it down for every route that dials it, i.e. 503s."""
    one = {svc: ["127.0.0.1:20000"] for svc in topo.services}   # the monolith: one address for all
    config = caddy.gateway_config(topo.rules, one, listen_port=18097, admin_port=18098, auth_service="auth",
                                  cluster_ports={"product": 18099})
    caddy_validate(config, tmp_path)
    handlers = [r["handle"][0] for r in routes_of(config)]
    handlers += [s["routes"][0]["handle"][0] for n, s in config["apps"]["http"]["servers"].items()
                 if n.startswith("cluster-")]
    proxies = [h for h in handlers if h["handler"] == "reverse_proxy"]
    assert len(proxies) > 5
    assert all("health_checks" not in h for h in proxies)
    assert all(h["load_balancing"]["try_duration"] > 0 for h in proxies)


def test_sidecar_config_is_valid_caddy_and_requires_client_certs(tmp_path):
    ca = MeshCA(tmp_path / "mesh")
    identity = ca.issue("order-0", "order")
    config = caddy.sidecar_config(admin_port=18091, inbound_port=18092, app_port=18093, identity=identity,
                                  outbound={18094: ("product", ["127.0.0.1:18095"])})
    caddy_validate(config, tmp_path)
    inbound = config["apps"]["http"]["servers"]["inbound"]
    assert inbound["tls_connection_policies"][0]["client_authentication"]["mode"] == "require_and_verify"
    out = config["apps"]["http"]["servers"]["outbound-product"]["routes"][0]["handle"][0]
    assert out["transport"]["tls"]["server_name"] == "product"
    assert out["transport"]["tls"]["client_certificate_file"] == identity.cert_file


def test_mesh_certificates_chain_to_the_ca(tmp_path):
    from cryptography import x509

    ca = MeshCA(tmp_path / "mesh")
    identity = ca.issue("product-0", "product")
    cert = x509.load_pem_x509_certificate(open(identity.cert_file, "rb").read())
    ca_cert = x509.load_pem_x509_certificate(open(identity.ca_file, "rb").read())
    cert.verify_directly_issued_by(ca_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "product" in sans.get_values_for_type(x509.DNSName)
    assert "spiffe://cloudmart.local/ns/cloudmart/sa/product" in sans.get_values_for_type(
        x509.UniformResourceIdentifier)
    other = MeshCA(tmp_path / "other")
    with pytest.raises(Exception):
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(open(other.ca_file, "rb").read()))


def test_over_limit_pattern_matches_exactly_the_lengths_over_the_limit():
    import random
    import re

    from cluster.caddy import MAX_BODY_BYTES, _over_limit_pattern

    for limit in (MAX_BODY_BYTES, 9, 10, 999, 1000, 65536):
        pattern = re.compile(_over_limit_pattern(limit))
        rng = random.Random(limit)
        for n in [*range(max(0, limit - 300), limit + 300), *(rng.randrange(10 ** 9) for _ in range(3000))]:
            assert bool(pattern.match(str(n))) == (n > limit), (limit, n)
