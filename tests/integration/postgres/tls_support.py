"""A test CA, and a real local PostgreSQL server serving a certificate it signed for an endpoint name."""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenantctl.local.pgserver import PgServer, start_server, stop_server

PASSWORD = "tls-admin-pw"
ENDPOINT = "main.cluster-abc123.eu-west-1.rds.amazonaws.com"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(directory: Path, hostname: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``hostname`` signed by it: (ca.pem, server.crt, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("tenantctl test CA")).issuer_name(_name("tenantctl test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(hostname)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (directory / "ca.pem", directory / "server.crt", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@contextmanager
def tls_server(hostname: str = ENDPOINT) -> Iterator[tuple[PgServer, Path]]:
    root = Path(tempfile.mkdtemp(prefix="tenantctl-tls-", dir="/tmp"))
    root.chmod(0o755)
    server = start_server(root / "data", name="main", admin_password=PASSWORD, unsafe_fast=True)
    try:
        ca, cert, key = make_pki(root, hostname)
        for path in (cert, key):
            target = server.data_dir / path.name
            shutil.copy(path, target)
            target.chmod(0o600)
            if os.getuid() == 0:
                entry = pwd.getpwnam("postgres")
                os.chown(target, entry.pw_uid, entry.pw_gid)
        with psycopg.connect(server.dsn(password=PASSWORD), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET ssl = on")
            conn.execute("ALTER SYSTEM SET ssl_cert_file = 'server.crt'")
            conn.execute("ALTER SYSTEM SET ssl_key_file = 'server.key'")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("CREATE DATABASE app")
        yield server, ca
    finally:
        stop_server(server.data_dir)
        shutil.rmtree(root, ignore_errors=True)


