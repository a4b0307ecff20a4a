"""The NetworkPolicies, evaluated as Kubernetes does for pods of the cloudmart namespace: the edges of
the service graph are open at both ends, and everything else is closed."""

from __future__ import annotations

import ipaddress

import pytest

NAMESPACE_LABELS = {"cloudmart": {"kubernetes.io/metadata.name": "cloudmart"},
                    "kong": {"kubernetes.io/metadata.name": "kong"},
                    "cloudmart-observability": {"kubernetes.io/metadata.name": "cloudmart-observability"},
                    "istio-system": {"kubernetes.io/metadata.name": "istio-system"}}


def selects(selector: dict | None, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr.get("values", []):
            return False
        if op == "Exists" and expr["key"] not in labels:
            return False
        if op == "DoesNotExist" and expr["key"] in labels:
            return False
    return True


POD_NETWORK = "10.244.0.0/16"          # kind's pod subnet: the address every pod's traffic comes from


class Address(str):
    """An endpoint that is not a pod (the API server's node, the ClusterIP it is reached through)."""


def in_ip_block(block: dict, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip in ipaddress.ip_network(block["cidr"]) and not any(
        ip in ipaddress.ip_network(e) for e in block.get("except", []))


def peer_matches(peer: dict, policy_ns: str, other) -> bool:
    if isinstance(other, Address):
        return "ipBlock" in peer and in_ip_block(peer["ipBlock"], other)
    ns, labels = other
    if "ipBlock" in peer:
        # Pods are addressed from the pod network (the address a CNI matches an ipBlock against).
        return in_ip_block(peer["ipBlock"], str(next(ipaddress.ip_network(POD_NETWORK).hosts())))
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], NAMESPACE_LABELS.get(ns, {})):
            return False
    elif ns != policy_ns:
        return False
    return selects(peer.get("podSelector"), labels)


def allowed(policies, direction: str, pod: tuple[str, dict], other: tuple[str, dict], port: int) -> bool:
    """Whether `pod` may send (Egress) to / receive (Ingress) from `other` on TCP `port`."""
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    applying = [p for p in policies if p["metadata"].get("namespace", "cloudmart") == pod[0]
                and direction in p["spec"].get("policyTypes", ["Ingress"]) and selects(p["spec"]["podSelector"], pod[1])]
    if not applying:
        return True
    for p in applying:
        for rule in p["spec"].get(key, []):
            peers_ok = "to" not in rule and "from" not in rule or any(
                peer_matches(peer, pod[0], other) for peer in rule.get(peers_key, []))
            ports_ok = "ports" not in rule or any(pp.get("port") == port for pp in rule["ports"])
            if peers_ok and ports_ok:
                return True
    return False


def edge_open(policies, src, dst, port) -> bool:
    return allowed(policies, "Egress", src, dst, port) and allowed(policies, "Ingress", dst, src, port)


@pytest.fixture(scope="module")
def graph(rendered):
    objects = rendered["kong-all"]
    pods = {}
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            pods[o["metadata"]["name"]] = (o["metadata"]["namespace"], o["spec"]["template"]["metadata"]["labels"])
    pods["kong-proxy"] = ("kong", {"app.kubernetes.io/name": "kong"})
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return pods, policies


SERVICES = ["auth", "user", "product", "product-canary", "inventory", "order", "payment", "notification"]
ALLOWED = (
    [(s, "auth", 8080) for s in SERVICES]
    + [("order", "product", 8080), ("order", "product-canary", 8080), ("auth", "user", 8080)]
    + [(s, infra, port) for s in SERVICES for infra, port in (("postgres", 5432), ("redis", 6379), ("nats", 4222))]
    + [("product", "mongo", 27017), ("product-canary", "mongo", 27017)]
    + [("kong-proxy", s, 8080) for s in SERVICES]
    + [("prometheus", s, 8080) for s in SERVICES]
    + [("grafana", "prometheus", 9090), ("opencost", "prometheus", 9090), ("prometheus", "opencost", 9003)]
)
DENIED = [
    ("product", "order", 8080), ("payment", "product", 8080), ("auth", "order", 8080), ("order", "mongo", 27017),
    ("inventory", "mongo", 27017), ("postgres", "redis", 6379), ("nats", "postgres", 5432), ("order", "auth", 9999),
    ("kong-proxy", "postgres", 5432), ("prometheus", "postgres", 5432), ("grafana", "order", 8080),
    ("user", "notification", 8080),
]


@pytest.mark.parametrize("src,dst,port", ALLOWED, ids=[f"{s}->{d}:{p}" for s, d, p in ALLOWED])
def test_service_graph_edge_is_open(graph, src, dst, port):
    pods, policies = graph
    assert edge_open(policies, pods[src], pods[dst], port)


@pytest.mark.parametrize("src,dst,port", DENIED, ids=[f"{s}->{d}:{p}" for s, d, p in DENIED])
def test_everything_else_is_closed(graph, src, dst, port):
    pods, policies = graph
    assert not edge_open(policies, pods[src], pods[dst], port)


def test_every_pod_is_covered_by_default_deny(graph):
    pods, policies = graph
    for name, (ns, labels) in pods.items():
        if ns == "kong":
            continue
        kinds = {t for p in policies if p["metadata"]["namespace"] == ns and selects(p["spec"]["podSelector"], labels)
                 for t in p["spec"]["policyTypes"]}
        assert kinds == {"Ingress", "Egress"}, name


def test_istio_gateway_reaches_services_only(rendered):
    objects = rendered["istio-all"]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pods = {o["metadata"]["name"]: (o["metadata"]["namespace"], o["spec"]["template"]["metadata"]["labels"])
            for o in objects if o["kind"] in ("Deployment", "StatefulSet")}
    gateway = ("cloudmart", {"gateway.networking.k8s.io/gateway-name": "cloudmart"})
    outside = ("kong", {})   # any client outside the namespace (kind's NodePort traffic)
    assert allowed(policies, "Ingress", gateway, outside, 80)
    for service in SERVICES:
        assert edge_open(policies, gateway, pods[service], 8080)
    for infra, port in (("postgres", 5432), ("redis", 6379), ("nats", 4222), ("mongo", 27017)):
        assert not edge_open(policies, gateway, pods[infra], port)
    # Every pod's sidecar reaches istiod for configuration and certificates.
    istiod = ("istio-system", {"app": "istiod"})
    for name, pod in pods.items():
        if pod[0] == "cloudmart":
            assert allowed(policies, "Egress", pod, istiod, 15012), name


# The Kubernetes API server, as the keygen Job's pod reaches it: the `kubernetes` Service's ClusterIP
# on 443 before kube-proxy's DNAT, or kind's control-plane node (on the `kind` Docker network) on
# 6443 after it; CNIs differ in which one a policy sees, so both must be open.
API_SERVER = [(Address("10.96.0.1"), 443), (Address("172.18.0.2"), 6443)]


@pytest.mark.parametrize("overlay", ["kong-all", "istio-all"])
def test_only_the_keygen_job_reaches_the_api_server(rendered, overlay):
    objects = rendered[overlay]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pods = {o["metadata"]["name"]: (o["metadata"]["namespace"], o["spec"]["template"]["metadata"]["labels"])
            for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")}
    keygen = pods["auth-keygen"]
    for address, port in API_SERVER:
        assert allowed(policies, "Egress", keygen, address, port), (address, port)
        for name, pod in pods.items():
            if name != "auth-keygen" and pod[0] == "cloudmart":
                assert not allowed(policies, "Egress", pod, address, port), (name, address, port)
    # Nothing else: not the API server's other ports, not the pods, no ingress at all.
    assert not allowed(policies, "Egress", keygen, Address("172.18.0.2"), 10250)
    assert not allowed(policies, "Egress", keygen, Address("10.244.0.7"), 443)
    for name, port in (("postgres", 5432), ("redis", 6379), ("auth", 8080)):
        assert not edge_open(policies, keygen, pods[name], port), name
        assert not edge_open(policies, pods[name], keygen, port), name
