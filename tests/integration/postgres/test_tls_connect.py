"""TLS verify-full to a cluster through a connect address (a tunnel's local end), against a real server
serving a certificate from a test CA for an endpoint name that does not resolve.

The connection goes to 127.0.0.1 (libpq ``hostaddr``) while the certificate is checked against the
endpoint name, as through a bastion or SSM tunnel to Aurora; a wrong name, a missing CA bundle and a
server without TLS are refused with an error naming the cluster; pg_dump takes the same path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tls_support  # type: ignore[import-not-found]
from tls_support import ENDPOINT, PASSWORD, make_ca  # type: ignore[import-not-found]

from tenantctl.errors import BackendError
from tenantctl.local.pgserver import PgServer
from tenantctl.postgres.connect import ClusterConnection, connect_admin

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[PgServer, Path]]:
    with tls_support.tls_server() as served:
        yield served


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
    other_ca = make_ca(tmp_path)
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
