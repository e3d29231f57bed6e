"""TLS on both legs with generated certificates: client -> proxy (termination) and proxy -> cluster."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from proxy_it_support import Clusters, ProxyProcess, StartProxy, raw_startup_error

from tenantctl.routing.document import ClusterRoute, ClusterTls
from tenantctl.routing.store import write_map

pytestmark = pytest.mark.postgres


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


def make_ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def make_leaf(directory: Path, name: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]
              ) -> tuple[Path, Path]:
    ca_cert, ca_key, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


class Pki:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = make_ca(directory, "test-ca")
        self.other_ca = make_ca(directory, "unrelated-ca")
        self.proxy_cert, self.proxy_key = make_leaf(directory, "proxy", self.ca)
        self.server_cert, self.server_key = make_leaf(directory, "cluster", self.ca)

    @property
    def ca_file(self) -> Path:
        return self.ca[2]


@pytest.fixture(scope="module")
def pki_with_tls_on_c2(clusters: Clusters) -> Iterator[Pki]:
    """Certificates, and TLS switched on for cluster c2's server (left on: harmless for other tests)."""
    directory = clusters.root / "pki"
    directory.mkdir(exist_ok=True)
    pki = Pki(directory)
    server_dir = clusters.servers["c2"].data_dir
    for source, target in ((pki.server_cert, "server.crt"), (pki.server_key, "server.key")):
        shutil.copy(source, server_dir / target)
        shutil.chown(server_dir / target, "postgres", "postgres")
        os.chmod(server_dir / target, 0o600)
    with clusters.admin("c2") as connection:
        connection.execute("ALTER SYSTEM SET ssl = on")
        connection.execute("SELECT pg_reload_conf()")
    yield pki


def test_tls_terminated_at_the_proxy_and_verified_to_the_cluster(clusters: Clusters, pki_with_tls_on_c2: Pki,
                                                                 workdir: Path, start_proxy: StartProxy) -> None:
    pki = pki_with_tls_on_c2
    routes = workdir / "routes.json"
    c1, c2 = clusters.servers["c1"], clusters.servers["c2"]
    write_map(routes, clusters.routing_map(clusters={
        "c1": ClusterRoute(c1.host, c1.port),
        "c2": ClusterRoute(c2.host, c2.port, ClusterTls("verify-full", str(pki.ca_file))),
    }))
    proxy = start_proxy(routes, "--tls-cert", str(pki.proxy_cert), "--tls-key", str(pki.proxy_key), "--require-tls")
    # SCRAM channel binding cannot survive TLS termination (the client binds to the proxy's
    # certificate, the cluster to its own): with TLS on both legs SCRAM clients disable it.
    dsn = proxy.dsn("bob", "app", "bob-pw", sslmode="verify-full", sslrootcert=str(pki.ca_file),
                    channel_binding="disable")
    with pytest.raises(psycopg.OperationalError, match="channel binding"):
        psycopg.connect(proxy.dsn("bob", "app", "bob-pw", sslmode="verify-full", sslrootcert=str(pki.ca_file)))
    with psycopg.connect(dsn) as connection:
        assert connection.info.pgconn.ssl_in_use
        row = connection.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row == (True,)  # the proxy -> cluster leg is encrypted too
        assert connection.execute("SELECT current_database()").fetchone() == ("bob_app",)
    # TLS to the client, plaintext to c1 (its mode is disable).
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw", sslmode="require")) as connection:
        assert connection.info.pgconn.ssl_in_use
        assert connection.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (False,)
    # --require-tls: a plaintext client is refused like pg_hba would.
    fields = raw_startup_error(proxy.port, "bob", "app")
    assert fields["C"] == "28000" and fields["M"].endswith("no encryption")
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(proxy.dsn("bob", "app", "bob-pw", sslmode="disable"))


def test_backend_tls_failures_are_08001(clusters: Clusters, pki_with_tls_on_c2: Pki, workdir: Path,
                                        start_proxy: StartProxy) -> None:
    pki = pki_with_tls_on_c2
    routes = workdir / "routes.json"
    c1, c2 = clusters.servers["c1"], clusters.servers["c2"]
    write_map(routes, clusters.routing_map(clusters={
        "c1": ClusterRoute(c1.host, c1.port, ClusterTls("require")),  # c1 has no TLS
        "c2": ClusterRoute(c2.host, c2.port, ClusterTls("verify-full", str(pki.other_ca[2]))),  # wrong CA
    }))
    proxy = start_proxy(routes)
    assert raw_startup_error(proxy.port, "alice", "app") == {
        "S": "FATAL", "V": "FATAL", "C": "08001", "M": 'could not establish TLS with cluster "c1"'}
    assert raw_startup_error(proxy.port, "bob", "app")["C"] == "08001"
    routes_require = workdir / "routes-require.json"
    write_map(routes_require, clusters.routing_map(clusters={
        "c1": ClusterRoute(c1.host, c1.port), "c2": ClusterRoute(c2.host, c2.port, ClusterTls("require"))}))
    proxy_require = start_proxy(routes_require)
    with psycopg.connect(proxy_require.dsn("bob", "app", "bob-pw", channel_binding="disable")) as connection:
        assert connection.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)


MATRIX = [  # (sslmode, channel_binding) -> "tls": logs in over TLS; else a fragment of the error (never plaintext)
    ("disable", "disable", "no encryption"),
    ("disable", "prefer", "no encryption"),
    ("prefer", "disable", "tls"),
    ("prefer", "prefer", "channel_binding=disable"),
    ("prefer", "require", "channel binding"),
    ("require", "disable", "tls"),
    ("require", "prefer", "channel_binding=disable"),
    ("require", "require", "channel binding"),
    ("verify-full", "disable", "tls"),
    ("verify-full", "prefer", "channel_binding=disable"),
]


def _tls_everywhere(clusters: Clusters, pki: Pki, workdir: Path, start_proxy: StartProxy) -> ProxyProcess:
    """A proxy with a certificate (and no flag) in front of c2 reached with TLS verify-full."""
    routes = workdir / "routes.json"
    c2 = clusters.servers["c2"]
    write_map(routes, clusters.routing_map(clusters={
        "c1": ClusterRoute(clusters.servers["c1"].host, clusters.servers["c1"].port),
        "c2": ClusterRoute(c2.host, c2.port, ClusterTls("verify-full", str(pki.ca_file)))}))
    return start_proxy(routes, "--tls-cert", str(pki.proxy_cert), "--tls-key", str(pki.proxy_key))


def test_channel_binding_matrix_never_falls_back_to_plaintext(clusters: Clusters, pki_with_tls_on_c2: Pki,
                                                              workdir: Path, start_proxy: StartProxy) -> None:
    """TLS on both legs, a certificate at the proxy and no flag: what libpq does for each sslmode x
    channel_binding. Whatever fails, fails with a message that says what to do, and no login ever
    completes without TLS (the proxy refuses plaintext once it has a certificate)."""
    pki = pki_with_tls_on_c2
    proxy = _tls_everywhere(clusters, pki, workdir, start_proxy)
    for sslmode, binding, expected in MATRIX:
        dsn = proxy.dsn("bob", "app", "bob-pw", sslmode=sslmode, channel_binding=binding,
                        sslrootcert=str(pki.ca_file))
        if expected == "tls":
            with psycopg.connect(dsn) as connection:
                assert connection.info.pgconn.ssl_in_use, (sslmode, binding)
            continue
        with pytest.raises(psycopg.OperationalError) as raised:
            psycopg.connect(dsn)
        assert expected in str(raised.value), (sslmode, binding, str(raised.value))
    assert proxy.metric('tenantctl_proxy_tenant_connections_total{tenant="bob"}') >= 3
    assert proxy.metric('tenantctl_proxy_rejections_total{reason="tls_required",tenant=""}') >= 2


def test_a_driver_without_channel_binding_logs_in_over_tls(clusters: Clusters, pki_with_tls_on_c2: Pki,
                                                           workdir: Path, start_proxy: StartProxy) -> None:
    import asyncio
    import ssl

    import asyncpg

    pki = pki_with_tls_on_c2
    proxy = _tls_everywhere(clusters, pki, workdir, start_proxy)
    context = ssl.create_default_context(cafile=str(pki.ca_file))

    async def login() -> tuple[object, object]:
        connection = await asyncpg.connect(host="127.0.0.1", port=proxy.port, user="bob", password="bob-pw",
                                           database="app", ssl=context, server_settings={})
        try:
            row = await connection.fetchrow("SELECT current_user, pg_backend_pid()")
            return row[0], (row[1], connection.get_server_pid())
        finally:
            await connection.close()

    user, (pid, reported) = asyncio.run(login())
    assert user == "bob" and pid == reported  # the real backend pid reaches non-libpq drivers too
    with pytest.raises(Exception, match="no encryption"):  # and plaintext is refused for them as well
        asyncio.run(asyncpg.connect(host="127.0.0.1", port=proxy.port, user="bob", password="bob-pw",
                                    database="app", ssl=False))
