"""The local target as a miniature of aws (issue 13 item 4): each local server serves TLS with a certificate
from the project's CA for the endpoint names the cluster stack's outputs carry; its admin password is the
cluster's master password, kept in (moto's) Secrets Manager in the RDS format; the one resolver reaches it
through a connect address with verify-full. Only DNS and the provider version differ from aws."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from tenantctl.aws.clusters import outputs_resolver
from tenantctl.aws.session import client, target_for
from tenantctl.errors import BackendError
from tenantctl.local.moto import ensure_moto, stop_moto
from tenantctl.local.pgserver import down_local_clusters, ensure_server_tls, up_local_clusters
from tenantctl.local.pki import ca_bundle
from tenantctl.model import model_from_text
from tenantctl.postgres.connect import ClusterNotCreatedError, connect_admin
from tenantctl.terraform.manifest import AppliedManifest

pytestmark = pytest.mark.postgres

ENDPOINT = "main.cluster-c0ffee123456.eu-west-1.rds.amazonaws.com"
READER = "main.cluster-ro-c0ffee123456.eu-west-1.rds.amazonaws.com"
MODEL = model_from_text('clusters = { main = {} }\nclients = [\n'
                        '  { name = "t1", databases = { app = true }, allowed_ips = ["3.3.3.3/32"], '
                        'rds_iam_auth = true },\n'
                        ']\n')


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tenantctl-mini-", dir="/tmp"))
    root.chmod(0o755)
    monkeypatch.setenv("TF_VAR_master_password", "first-master-password")
    try:
        yield root / ".tenantctl"
    finally:
        down_local_clusters(root / ".tenantctl")
        stop_moto(root / ".tenantctl")
        shutil.rmtree(root, ignore_errors=True)


def record_outputs(state: Path, secret_arn: str | None) -> None:
    """What applying the local cluster stack records (its outputs), without running Terraform."""
    outputs = {"main": {"endpoint": ENDPOINT, "reader_endpoint": READER, "port": 5432,
                        "cluster_resource_id": "cluster-X", "arn": "arn:aws:rds:eu-west-1:123456789012:cluster:main",
                        "admin_secret_arn": secret_arn}}
    AppliedManifest(state / "applied.json").record("cluster", "h", "p", outputs)


def admin_secret(state: Path, password: str) -> str:
    secrets = client(target_for(MODEL.settings, ensure_moto(state).url), "secretsmanager")
    return str(secrets.create_secret(Name="tenantctl/main/master", SecretString=json.dumps(
        {"username": "tenantctl_admin", "password": password}))["ARN"])


def test_the_resolver_reaches_a_local_server_as_it_reaches_aurora(state: Path) -> None:
    servers = up_local_clusters(MODEL, state)
    resolver = outputs_resolver(MODEL, state)
    with pytest.raises(ClusterNotCreatedError, match="cluster main: no endpoint recorded"):
        resolver.resolve("main")  # before the cluster stack is applied: nothing to reach, as on aws

    record_outputs(state, admin_secret(state, "first-master-password"))
    connection = outputs_resolver(MODEL, state).resolve("main")
    assert (connection.host, connection.port, connection.sslmode) == (ENDPOINT, 5432, "verify-full")
    assert (connection.connect_address, connection.connect_port) == ("127.0.0.1", servers["main"].port)
    assert connection.sslrootcert == str(ca_bundle(state))
    with connect_admin(connection) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == ("tenantctl_admin",)

    # the certificate names the endpoints, not any name: verify-full refuses a wrong one
    for name in (ENDPOINT, READER):
        with psycopg.connect(host=name, hostaddr="127.0.0.1", port=servers["main"].port, sslmode="verify-full",
                             sslrootcert=str(ca_bundle(state)), user="tenantctl_admin",
                             password="first-master-password", dbname="postgres") as conn:
            assert conn.info.pgconn.ssl_in_use
    target = replace(connection, host="main.cluster-other.eu-west-1.rds.amazonaws.com")
    with pytest.raises(BackendError, match="cannot connect to cluster main") as refused:
        connect_admin(target)
    assert "certificate" in (refused.value.hint or ""), refused.value


def test_certificates_are_reissued_only_for_new_names(state: Path) -> None:
    server = up_local_clusters(MODEL, state)["main"]
    assert ensure_server_tls(server, state, (ENDPOINT,)) is True  # local up alone names only the loopback
    assert ensure_server_tls(server, state, (ENDPOINT,)) is False
    assert ensure_server_tls(server, state, (ENDPOINT, READER)) is True
    keys = list(server.data_dir.glob("server-*.key"))
    assert len(keys) == 1 and len(list(server.data_dir.glob("server-*.crt"))) == 1, "old pairs are removed"
    assert keys[0].stat().st_mode & 0o777 == 0o600
    assert (ca_bundle(state).parent / "ca.key").stat().st_mode & 0o777 == 0o600


def test_an_unreadable_or_malformed_admin_secret_names_the_cluster(state: Path) -> None:
    up_local_clusters(MODEL, state)
    record_outputs(state, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:absent")
    with pytest.raises(BackendError, match="cluster main: cannot read its admin secret"):
        outputs_resolver(MODEL, state).resolve("main")
    secrets = client(target_for(MODEL.settings, ensure_moto(state).url), "secretsmanager")
    arn = secrets.create_secret(Name="not-rds", SecretString="just a password")["ARN"]
    record_outputs(state, arn)
    with pytest.raises(BackendError, match="is not an RDS admin secret"):
        outputs_resolver(MODEL, state).resolve("main")


def test_the_admin_password_follows_the_master_password(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = up_local_clusters(MODEL, state)["main"]
    with psycopg.connect(server.dsn(password="first-master-password"), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET log_statement = 'all'")  # the change must not log the password
        conn.execute("SELECT pg_reload_conf()")
    monkeypatch.setenv("TF_VAR_master_password", "second-master-password")
    assert up_local_clusters(MODEL, state)["main"] == server
    with psycopg.connect(server.dsn(password="second-master-password")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(server.dsn(password="first-master-password")).close()
    with psycopg.connect(server.dsn(password="second-master-password")) as conn:
        assert conn.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid "
                            "WHERE rolname = current_user").fetchone() == (True,)
    log = server.log_file.read_text()
    assert "ALTER ROLE" in log and "second-master-password" not in log


def test_a_crash_between_writing_the_new_pair_and_switching_keeps_the_server_startable(state: Path) -> None:
    """A new key and certificate that were written but never switched to change nothing: the server keeps
    serving (and restarts with) the pair its TLS file names, and the next check issues a fresh one."""
    from tenantctl.local.pgserver import stop_server

    server = up_local_clusters(MODEL, state)["main"]
    (server.data_dir / "server-deadbeef.key").write_text("half-written")  # as left by a crash
    stop_server(server.data_dir)
    restarted = up_local_clusters(MODEL, state)["main"]
    assert ensure_server_tls(restarted, state, (ENDPOINT,)) is True
    with psycopg.connect(host=ENDPOINT, hostaddr="127.0.0.1", port=restarted.port, sslmode="verify-full",
                         sslrootcert=str(ca_bundle(state)), user="tenantctl_admin",
                         password="first-master-password", dbname="postgres") as conn:
        assert conn.info.pgconn.ssl_in_use
    assert not (server.data_dir / "server-deadbeef.key").exists()
