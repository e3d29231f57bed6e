"""The local target's certificate authority: the stand-in for the RDS CA bundle.

``tenantctl local up`` creates one CA per project (``.tenantctl/local/ca/ca.pem``, its key 0600 beside
it) and each local server serves a certificate it signed for the names the cluster stack's outputs
give that cluster (moto's endpoint names), so tenantctl verifies the local servers exactly as it
verifies Aurora: ``sslmode=verify-full`` against the endpoint name, reached through a connect address.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tenantctl.fsutil import PUBLIC, atomic_write_bytes

CA_DIR = Path("local") / "ca"
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CA_NAME = "tenantctl local CA"
CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)

if TYPE_CHECKING:
    from cryptography import x509 as x509_types


@dataclass(frozen=True)
class ServerCertificate:
    cert_pem: bytes
    key_pem: bytes


def ca_bundle(state_dir: Path) -> Path:
    """The project's local CA certificate (what ``settings.postgres.ca_bundle`` is on aws)."""
    return Path(state_dir).absolute() / CA_DIR / CA_CERT


def ensure_ca(state_dir: Path) -> Path:
    """Create the project's CA once; returns the path of its certificate (world-readable: servers read it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cert_path = ca_bundle(state_dir)
    key_path = cert_path.parent / CA_KEY
    if cert_path.is_file() and key_path.is_file():
        return cert_path
    now = _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(CA_NAME)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    atomic_write_bytes(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()), mode=0o600)
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=PUBLIC)
    cert_path.parent.chmod(0o711)
    return cert_path


def certificate_covers(cert_pem: bytes, names: Iterable[str], ca_pem: bytes) -> bool:
    """Whether the certificate was signed by this CA, is valid a while longer and names every name."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return False
    if cert.issuer != ca.subject or cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    try:
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, Exception):  # InvalidSignature is not a ValueError
        return False
    present = {str(n) for n in san.get_values_for_type(x509.DNSName)}
    present |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(names) <= present


def issue_server_certificate(state_dir: Path, names: Iterable[str]) -> ServerCertificate:
    """A server certificate signed by the project's CA for ``names`` (DNS names or IP addresses)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_path = ensure_ca(state_dir)
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    ca_key = serialization.load_pem_private_key((ca_path.parent / CA_KEY).read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ordered = sorted(set(names))
    alternative: list[x509.GeneralName] = []
    for name in ordered:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    now = _now()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(ordered[0] if ordered else "localhost"))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return ServerCertificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _name(common: str) -> x509_types.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
