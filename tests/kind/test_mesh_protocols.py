"""Inside the Istio mesh every Service port states its protocol, and server-first protocols are TCP.

Istio picks a port's protocol from `appProtocol`, else from the port name `<protocol>[-<suffix>]`;
an undeclared port is sniffed from the client's first bytes. A server-first protocol (the server
speaks first: NATS sends INFO, PostgreSQL and MySQL greet, SMTP banners) never gets those bytes,
and with no detection timeout the connection hangs (Istio's "Protocol Selection" and "Application
Requirements" pages; istio/istio#28623). These checks read the rendered overlays offline.
"""

from __future__ import annotations

import re

import pytest

from kind_manifests import OVERLAYS

# Istio's explicit protocols (Protocol Selection: "The following protocols are supported").
ISTIO_PROTOCOLS = ("http", "http2", "https", "tcp", "tls", "grpc", "grpc-web", "mongo", "mysql", "redis", "udp")
PORT_NAME = re.compile(rf"^({'|'.join(re.escape(p) for p in ISTIO_PROTOCOLS)})(-.*)?$")
# Server programs whose clients wait for the server to speak first (by image repository), and the
# programs Istio lists as incompatible with automatic detection (MongoDB, MySQL, SMTP, DNS).
# Container port per image repository.
SERVER_FIRST = {"library/nats": 4222, "library/postgres": 5432, "library/mysql": 3306, "library/mariadb": 3306,
                "library/mongo": 27017}
MESHED_OVERLAYS = [o for o in OVERLAYS if o.startswith("istio")]


def declared_protocol(port: dict) -> str | None:
    """The protocol Istio uses for a Service port without sniffing (appProtocol wins), else None."""
    if port.get("appProtocol"):
        return port["appProtocol"].lower()
    match = PORT_NAME.match(port.get("name", ""))
    return match.group(1) if match else None


def meshed_namespaces(objects: list[dict]) -> set[str]:
    return {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"
            and o["metadata"].get("labels", {}).get("istio-injection") == "enabled"}


def selected_containers(service: dict, objects: list[dict]) -> list[dict]:
    """Containers of the workloads whose pods the Service selects."""
    selector = service["spec"].get("selector") or {}
    containers = []
    for o in objects:
        if o["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        if o["metadata"].get("namespace") != service["metadata"].get("namespace"):
            continue
        labels = o["spec"]["template"]["metadata"].get("labels", {})
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            containers += o["spec"]["template"]["spec"]["containers"]
    return containers


def target_is_server_first(port: dict, containers: list[dict]) -> bool:
    """Whether a Service port leads to a server-first port of one of the selected containers."""
    target = port.get("targetPort", port["port"])
    for c in containers:
        first = next((n for repo, n in SERVER_FIRST.items() if f"{repo}:" in c["image"]), None)
        if first is None:
            continue
        numbers = [p["containerPort"] for p in c.get("ports", []) if target in (p.get("name"), p["containerPort"])]
        if first in numbers:
            return True
    return False


def protocol_problems(objects: list[dict]) -> list[str]:
    """Every Service port of a meshed namespace without an explicit protocol, and every server-first
    port not declared TCP."""
    namespaces = meshed_namespaces(objects)
    problems = []
    for svc in (o for o in objects if o["kind"] == "Service" and o["metadata"].get("namespace") in namespaces):
        containers = selected_containers(svc, objects)
        for port in svc["spec"].get("ports", []):
            where = f"Service {svc['metadata']['name']} port {port.get('name')}/{port['port']}"
            protocol = declared_protocol(port)
            if protocol is None:
                problems.append(f"{where}: no protocol (name it <protocol>[-suffix] or set appProtocol)")
            elif protocol != "tcp" and target_is_server_first(port, containers):
                problems.append(f"{where}: server-first protocol declared {protocol!r}, must be tcp")
    return problems


def test_meshed_overlays_exist():
    assert MESHED_OVERLAYS == ["istio", "istio-all"]


@pytest.mark.parametrize("overlay", MESHED_OVERLAYS)
def test_every_meshed_service_port_declares_its_protocol(rendered, overlay):
    objects = rendered[overlay]
    assert "cloudmart" in meshed_namespaces(objects)
    assert protocol_problems(objects) == []


@pytest.mark.parametrize("overlay", MESHED_OVERLAYS)
def test_server_first_infra_ports_are_tcp(rendered, overlay):
    services = {o["metadata"]["name"]: o for o in rendered[overlay] if o["kind"] == "Service"}
    for name, number in (("nats", 4222), ("postgres", 5432), ("mongo", 27017), ("redis", 6379)):
        (port,) = [p for p in services[name]["spec"]["ports"] if p["port"] == number]
        assert declared_protocol(port) == "tcp", name


def test_the_check_catches_an_undeclared_and_a_misdeclared_port(rendered):
    objects = [dict(o) for o in rendered["istio"]]
    nats = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "nats")
    for port, expected in (({"name": "client", "port": 4222, "targetPort": "client"}, "no protocol"),
                           ({"name": "http-client", "port": 4222, "targetPort": "client"}, "must be tcp")):
        broken = {**nats, "spec": {**nats["spec"], "ports": [port]}}
        problems = protocol_problems([o if o is not nats else broken for o in objects])
        assert len(problems) == 1 and expected in problems[0], problems
