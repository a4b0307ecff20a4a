"""`--mesh`: an Envoy sidecar per replica, mTLS with SPIFFE identities between them, Envoy's metrics."""

from __future__ import annotations

import re
import socket
import ssl
import uuid

import asyncio

import httpx
import pytest
from echo_proc import free_port

pytestmark = [pytest.mark.live, pytest.mark.slow]


def _replica(running, deployment):
    return running.cm.status()["deployments"][deployment]["replicas"][0]


def test_every_replica_has_a_sidecar(mesh_cloudmart):
    import os
    import stat

    status = mesh_cloudmart.cm.status()
    assert status["mesh"] is True
    for dep in status["deployments"].values():
        for rep in dep["replicas"]:
            assert rep["sidecar_pid"] and rep["sidecar_inbound_port"]
            # Its admin interface is a Unix socket in a folder only this user can enter (no TCP).
            sock = rep["sidecar_admin_socket"]
            assert stat.S_ISSOCK(os.stat(sock).st_mode)
            assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700


def test_plaintext_to_a_sidecar_is_refused(mesh_cloudmart):
    rep = _replica(mesh_cloudmart, "product")
    # PeerAuthentication STRICT: the listener speaks TLS only; Envoy closes a plaintext connection
    # during the handshake, so no HTTP answer (and no request reaches the service).
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
        httpx.get(f"http://127.0.0.1:{rep['sidecar_inbound_port']}/api/products")


def _tls_get(port: int, context: ssl.SSLContext, server_name: str = "product") -> bytes:
    """One HTTPS GET over a raw socket: a refused connection (no sidecar listening) raises
    ConnectionRefusedError, a refused handshake raises ssl.SSLError."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(b"GET /api/products HTTP/1.1\r\nHost: product\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data


def test_tls_without_a_mesh_client_certificate_is_refused(mesh_cloudmart):
    rep = _replica(mesh_cloudmart, "product")
    mesh = mesh_cloudmart.state_dir / "run" / "mesh"
    with_cert = ssl.create_default_context(cafile=str(mesh / "ca.pem"))
    with_cert.load_cert_chain(str(mesh / "gateway.pem"), str(mesh / "gateway-key.pem"))
    assert _tls_get(rep["sidecar_inbound_port"], with_cert).startswith(b"HTTP/1.1 200"), "the sidecar serves"
    without = ssl.create_default_context(cafile=str(mesh / "ca.pem"))
    refusal = _tls_refusal(rep["sidecar_inbound_port"], without)
    assert re.search("(?i)certificate required|handshake failure|bad certificate", str(refusal)), refusal


def _tls_refusal(port: int, context: ssl.SSLContext, server_name: str = "product") -> ssl.SSLError:
    """The error a sidecar's refusal gives, read deterministically. Under TLS 1.3 the client's
    handshake completes before the server has checked the client's certificate; the server then
    sends its alert and closes. A client that writes a request first races that close: its data
    arrives on a closed socket, the kernel answers with a reset, and the reset can discard the
    alert unread (the client sees only "EOF occurred in violation of protocol"). So this client
    writes nothing and only reads: the alert is the next thing on the wire. A server that does
    not refuse waits for a request, and the read times out, which fails the test."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                data = tls.recv(65536)
        except ssl.SSLError as refused:
            return refused
    raise AssertionError(f"the sidecar did not refuse the handshake: it sent {data[:60]!r}")


def test_a_client_certificate_from_another_ca_is_refused(mesh_cloudmart, tmp_path):
    from cluster.mesh import MeshCA

    rogue = MeshCA(tmp_path / "rogue").issue("intruder", "order")
    rep = _replica(mesh_cloudmart, "product")
    context = ssl.create_default_context(cafile=str(mesh_cloudmart.state_dir / "run" / "mesh" / "ca.pem"))
    context.load_cert_chain(rogue.cert_file, rogue.key_file)
    refusal = _tls_refusal(rep["sidecar_inbound_port"], context)
    # Both CAs carry the same subject name, so Envoy finds "its" issuer and the signature check fails:
    # BoringSSL's alert for that is decrypt_error (unknown_ca when the issuer name is not known).
    assert re.search("(?i)unknown ca|decrypt error|bad certificate|certificate", str(refusal)), refusal


def test_outbound_verifies_the_peer_is_the_service_it_called(mesh_cloudmart, tmp_path):
    """A sidecar's outbound listener for "product" accepts only a peer whose certificate names
    product: the same mesh CA's certificate for payment (a replica answering on the wrong port,
    or a stolen identity) is refused, although it is valid for 127.0.0.1."""
    import contextlib

    from cluster import topology
    from cluster.dataplane.build import MeshIdentity
    from cluster.dataplane.local import Sidecar, render_sidecar
    from cluster.mesh import MeshCA

    status = mesh_cloudmart.cm.status()["deployments"]
    product = f"127.0.0.1:{status['product']['replicas'][0]['sidecar_inbound_port']}"
    payment = f"127.0.0.1:{status['payment']['replicas'][0]['sidecar_inbound_port']}"
    tls = MeshCA(mesh_cloudmart.state_dir / "run" / "mesh").issue("outbound-test", "order")
    identity = MeshIdentity(tls.ca_file, tls.cert_file, tls.key_file)

    @contextlib.contextmanager
    def sidecar(name, dial):
        """A sidecar of its own (rendered like the live ones) whose outbound listener for product dials `dial`."""
        outbound = free_port()
        proxy = Sidecar(tmp_path / name, node_id=name)
        plane = render_sidecar(topology.load(), service="order", labels={"app.kubernetes.io/name": "order"},
                               app=f"127.0.0.1:{free_port()}", inbound_port=free_port(), identity=identity,
                               peers={"product": (outbound, [dial])})
        asyncio.run(proxy.start(plane))
        try:
            yield f"http://127.0.0.1:{outbound}/api/products", proxy.proxy
        finally:
            asyncio.run(proxy.stop())

    with sidecar("right", product) as (right_url, _), sidecar("wrong", payment) as (wrong_url, wrong):
        ok = httpx.get(right_url, timeout=10)
        assert ok.status_code == 200 and ok.json()["items"]
        # payment's certificate names spiffe://…/sa/payment, not product: the handshake fails.
        refused = httpx.get(wrong_url, timeout=10)
        assert refused.status_code == 503, (refused.status_code, refused.text[:200])
        # Envoy refused the peer's certificate itself (its SPIFFE id is not product's).
        assert wrong.stats()["cluster.outbound|80||product.ssl.fail_verify_san"] >= 1


def test_tls_with_a_mesh_certificate_is_accepted(mesh_cloudmart):
    rep = _replica(mesh_cloudmart, "product")
    mesh = mesh_cloudmart.state_dir / "run" / "mesh"
    context = ssl.create_default_context(cafile=str(mesh / "ca.pem"))
    context.load_cert_chain(str(mesh / "gateway.pem"), str(mesh / "gateway-key.pem"))
    resp = httpx.get(f"https://127.0.0.1:{rep['sidecar_inbound_port']}/api/products", verify=context)
    assert resp.status_code == 200 and resp.json()["items"]


def test_checkout_flows_through_the_sidecars(mesh_cloudmart):
    cm = mesh_cloudmart.cm
    before = cm.metrics()
    pid = cm.get("/api/products").json()["items"][0]["id"]
    resp = cm.post("/api/orders", json={"items": [{"product_id": pid, "quantity": 1}],
                                        "payment": {"card_number": "4242424242424242"}},
                   headers={"Idempotency-Key": str(uuid.uuid4())})
    assert resp.status_code == 202, resp.text
    after = cm.metrics()

    def outbound_product(df):
        rows = df[(df["source"] == "order-0-sidecar") & (df["metric"] == "envoy_cluster_upstream_rq_total")]
        return sum(r["value"] for _, r in rows.iterrows()
                   if r["labels"]["envoy_cluster_name"] == "outbound|80||product")

    assert outbound_product(after) > outbound_product(before), "order called product through its sidecar"
    inbound = after[(after["source"] == "product-0-sidecar") & (after["metric"] == "envoy_cluster_upstream_rq_total")]
    assert inbound["value"].sum() > 0


def test_every_envoy_holds_at_most_seven_inotify_instances(mesh_cloudmart):
    """Each file-based xDS subscription costs an Envoy an inotify instance (the user's limit is
    fs.inotify.max_user_instances, 128 by default): LDS, CDS, one shared RDS, two SDS secrets and
    the two certificate files they watch. One RDS per listener would exceed it."""
    from cluster.dataplane import limits

    status = mesh_cloudmart.cm.status()
    pids = {"gateway": status["gateway_pid"]} | {rep["id"]: rep["sidecar_pid"] for dep in status["deployments"].values()
                                                 for rep in dep["replicas"]}
    held = {name: limits.instances_of(pid) for name, pid in pids.items()}
    assert len(held) >= 8 and all(1 <= n <= limits.PER_ENVOY for n in held.values()), held
    order = next(rep for rep in status["deployments"]["order"]["replicas"])
    # order's sidecar has an outbound listener per peer, yet one watched route file.
    assert len(order["sidecar_outbound_ports"]) >= 2 and held[order["id"]] <= limits.PER_ENVOY


def test_order_replica_is_wired_to_its_own_sidecar(mesh_cloudmart):
    rep = _replica(mesh_cloudmart, "order")
    assert set(rep["sidecar_outbound_ports"]) >= {"product", "auth"}


def test_a_crashed_sidecar_is_started_again(mesh_cloudmart, wait_for):
    import os
    import signal

    cm = mesh_cloudmart.cm
    old = _replica(mesh_cloudmart, "product")
    os.kill(old["sidecar_pid"], signal.SIGKILL)

    def serving_again():
        rep = _replica(mesh_cloudmart, "product")
        if rep["sidecar_pid"] == old["sidecar_pid"]:
            return False
        try:
            return cm.get("/api/products").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(serving_again, 30)


def test_a_frozen_sidecar_takes_its_replica_out_of_the_endpoints(mesh_cloudmart, wait_for):
    """Readiness is probed through the sidecar: a sidecar that stops answering (SIGSTOP) makes its
    replica not ready although the replica's own /readyz still answers; once it runs again the
    replica is ready again."""
    import os
    import signal

    cm = mesh_cloudmart.cm
    rep = _replica(mesh_cloudmart, "inventory")
    os.kill(rep["sidecar_pid"], signal.SIGSTOP)
    try:
        wait_for(lambda: not _replica(mesh_cloudmart, "inventory")["ready"], 30)
        own = httpx.get(f"http://127.0.0.1:{rep['port']}/readyz", timeout=5)
        assert own.status_code == 200, own.text
        assert cm.status()["deployments"]["inventory"]["ready"] == 0
    finally:
        os.kill(rep["sidecar_pid"], signal.SIGCONT)
    wait_for(lambda: _replica(mesh_cloudmart, "inventory")["ready"], 30)
    assert _replica(mesh_cloudmart, "inventory")["sidecar_pid"] == rep["sidecar_pid"]
