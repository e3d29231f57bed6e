"""TLS verify-full to a cluster through a connect address (a tunnel's local end), against a real server
serving a certificate from a test CA for an endpoint name that does not resolve.

The connection goes to 127.0.0.1 (libpq ``hostaddr``) while the certificate is checked against the
endpoint name, as through a bastion or SSM tunnel to Aurora; a wrong name, a missing CA bundle and a
server without TLS are refused with an error naming the cluster; pg_dump takes the same path.
"""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenantctl.errors import BackendError
from tenantctl.local.pgserver import PgServer, start_server, stop_server
from tenantctl.postgres.connect import ClusterConnection, connect_admin

pytestmark = pytest.mark.postgres

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


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[PgServer, Path]]:
    root = Path(tempfile.mkdtemp(prefix="tenantctl-tls-", dir="/tmp"))
    root.chmod(0o755)
    server = start_server(root / "data", name="main", admin_password=PASSWORD, unsafe_fast=True)
    try:
        ca, cert, key = make_pki(root, ENDPOINT)
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


def through_tunnel(server: PgServer, ca: Path, *, host: str = ENDPOINT) -> ClusterConnection:
    return ClusterConnection(cluster="main", host=host, port=5432, admin_user=server.admin_user,
                             admin_password=PASSWORD, sslmode="verify-full", sslrootcert=str(ca),
                             connect_address="127.0.0.1", connect_port=server.port)


def test_verify_full_through_a_connect_address_checks_the_endpoint_name(tls_server: tuple[PgServer, Path]) -> None:
    server, ca = tls_server
    with connect_admin(through_tunnel(server, ca)) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row == (True,)


def test_a_wrong_endpoint_name_is_refused_naming_the_cluster(tls_server: tuple[PgServer, Path]) -> None:
    server, ca = tls_server
    with pytest.raises(BackendError) as caught:
        connect_admin(through_tunnel(server, ca, host="main.cluster-other.eu-west-1.rds.amazonaws.com"))
    assert "cluster main" in caught.value.message
    assert caught.value.hint is not None and "name" in caught.value.hint


def test_a_missing_ca_bundle_is_refused_before_connecting(tls_server: tuple[PgServer, Path], tmp_path: Path) -> None:
    server, ca = tls_server
    with pytest.raises(BackendError, match=r"cluster main: the CA bundle .* does not exist"):
        connect_admin(replace(through_tunnel(server, ca), sslrootcert=str(tmp_path / "absent.pem")))


def test_another_ca_is_refused(tls_server: tuple[PgServer, Path], tmp_path: Path) -> None:
    server, _ca = tls_server
    other_ca, _, _ = make_pki(tmp_path, ENDPOINT)
    with pytest.raises(BackendError, match="cannot connect to cluster main"):
        connect_admin(through_tunnel(server, other_ca))


def test_pg_dump_takes_the_same_verified_path(tls_server: tuple[PgServer, Path], tmp_path: Path) -> None:
    from tenantctl.workflow.archive import Archive
    from tenantctl.workflow.offboard import ClusterAdmin

    server, ca = tls_server
    admin = ClusterAdmin(through_tunnel(server, ca))
    dump = Archive(str(tmp_path / "archive")).dump(admin.dump_source(), "app", "main/app.dump")
    assert Path(dump.location).stat().st_size > 0
    wrong = ClusterAdmin(through_tunnel(server, ca, host="elsewhere.example"))
    with pytest.raises(Exception, match="pg_dump"):
        Archive(str(tmp_path / "archive2")).dump(wrong.dump_source(), "app", "main/app.dump")
