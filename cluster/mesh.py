"""The mesh's certificate authority: made at start-up, it signs one identity per workload.

Each identity carries the service name as a DNS SAN (what a caller verifies, like an Istio
sidecar checks a peer's SPIFFE identity), a SPIFFE URI SAN, and 127.0.0.1 as an IP SAN.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID



@dataclass(frozen=True)
class MeshTLS:
    """Files of one mesh identity: the CA that signs every workload, and this party's cert/key."""

    ca_file: str
    cert_file: str
    key_file: str

TRUST_DOMAIN = "cloudmart.local"
VALIDITY = dt.timedelta(days=2)
#: A CA or workload certificate with less than this left is replaced when CloudMart starts (and
#: whenever a sidecar's configuration is made): one from an earlier run may have expired since.
RENEW_BEFORE = dt.timedelta(hours=12)


def _fresh(cert: x509.Certificate) -> bool:
    now = dt.datetime.now(dt.timezone.utc)
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_BEFORE


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class MeshCA:
    """A throwaway CA living in `folder` (ca.pem, ca-key.pem) that issues workload certificates."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.folder / "ca.pem"
        key_file = self.folder / "ca-key.pem"
        if self.ca_file.exists() and key_file.exists():
            self._key = serialization.load_pem_private_key(key_file.read_bytes(), None)
            self._cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
            if _fresh(self._cert):
                return
            # Expired or about to: a new CA, and every workload certificate it signed goes with it.
            for old in self.folder.glob("*.pem"):
                old.unlink()
        now = dt.datetime.now(dt.timezone.utc)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CloudMart mesh"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "CloudMart mesh CA")])
        self._cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        _write_key(self._key, key_file)
        self.ca_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, workload: str, service: str) -> MeshTLS:
        """Issue (or reuse) the certificate of `workload` (a replica id or 'gateway') for `service`."""
        cert_file = self.folder / f"{workload}.pem"
        key_file = self.folder / f"{workload}-key.pem"
        if not (cert_file.exists() and key_file.exists()) or not self._valid(cert_file):
            now = dt.datetime.now(dt.timezone.utc)
            key = ec.generate_private_key(ec.SECP256R1())
            spiffe = f"spiffe://{TRUST_DOMAIN}/ns/cloudmart/sa/{service}"
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, workload)]))
                .issuer_name(self._cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName(service), x509.UniformResourceIdentifier(spiffe),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                      x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(self._key, hashes.SHA256())
            )
            _write_key(key, key_file)
            cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return MeshTLS(str(self.ca_file), str(cert_file), str(key_file))

    def _valid(self, cert_file: Path) -> bool:
        """Whether a stored workload certificate is fresh and was signed by this CA."""
        try:
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            cert.verify_directly_issued_by(self._cert)
        except Exception:   # unreadable, or signed by another CA
            return False
        return _fresh(cert)
