"""The mesh CA replaces expired certificates instead of serving them (mesh mode after two days)."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from cluster import mesh


def _cert(path):
    return x509.load_pem_x509_certificate(open(path, "rb").read())


def test_an_expired_ca_and_its_certificates_are_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(mesh, "VALIDITY", dt.timedelta(seconds=1))   # as if made two days ago
    old = mesh.MeshCA(tmp_path)
    old_tls = old.issue("order-0", "order")
    old_serial = _cert(old.ca_file).serial_number
    assert _cert(old_tls.cert_file).not_valid_after_utc - dt.datetime.now(dt.timezone.utc) < mesh.RENEW_BEFORE

    monkeypatch.setattr(mesh, "VALIDITY", dt.timedelta(days=2))
    ca = mesh.MeshCA(tmp_path)
    tls = ca.issue("order-0", "order")
    now = dt.datetime.now(dt.timezone.utc)
    assert _cert(ca.ca_file).serial_number != old_serial
    workload = _cert(tls.cert_file)
    assert workload.not_valid_after_utc - now > dt.timedelta(days=1)
    workload.verify_directly_issued_by(_cert(ca.ca_file))


def test_a_fresh_certificate_is_kept_and_one_of_another_ca_is_not(tmp_path):
    ca = mesh.MeshCA(tmp_path / "a")
    first = _cert(ca.issue("payment-0", "payment").cert_file).serial_number
    assert _cert(mesh.MeshCA(tmp_path / "a").issue("payment-0", "payment").cert_file).serial_number == first
    # A workload certificate signed by another CA (a copied folder, a half-finished rotation).
    other = mesh.MeshCA(tmp_path / "b")
    other.issue("payment-0", "payment")
    (tmp_path / "a" / "payment-0.pem").write_bytes((tmp_path / "b" / "payment-0.pem").read_bytes())
    reissued = _cert(ca.issue("payment-0", "payment").cert_file)
    reissued.verify_directly_issued_by(_cert(ca.ca_file))
