"""Local PostgreSQL servers: initdb as the postgres OS user, SCRAM only, loopback, reuse, stable ports."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenantctl.errors import BackendError
from tenantctl.local.pgserver import (
    down_local_clusters,
    local_admin_password,
    local_clusters_status,
    server_status,
    start_server,
    stop_server,
    up_local_clusters,
)
from tenantctl.model import model_from_text

pytestmark = pytest.mark.postgres


@pytest.fixture
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tenantctl-pgserver-"))
    root.chmod(0o755)
    yield root
    for data_dir in root.rglob("PG_VERSION"):
        stop_server(data_dir.parent)
    shutil.rmtree(root, ignore_errors=True)


def test_start_reuse_stop_restart(workdir: Path) -> None:
    password = "pw-" + secrets.token_urlsafe(12)
    server = start_server(workdir / "data", name="main", admin_password=password)
    assert server.host == "127.0.0.1"
    assert start_server(workdir / "data", name="main", admin_password=password) == server  # reused
    with psycopg.connect(server.dsn(password=password)) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
        assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'rds_iam'").fetchone() == (False,)
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        hba = conn.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules").fetchall()
        assert hba == [("scram-sha-256",)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(server.dsn(password="wrong")).close()
    pid = server_status(workdir / "data").pid
    assert pid is not None
    cmdlines = [p.read_bytes() for p in Path("/proc").glob("[0-9]*/cmdline") if p.exists()]
    assert not any(password.encode() in c for c in cmdlines)
    assert stop_server(workdir / "data") is True
    assert server_status(workdir / "data").running is False
    assert stop_server(workdir / "data") is False
    again = start_server(workdir / "data", name="main", admin_password=password)
    assert again.port == server.port  # the routing map stays valid across restarts
    assert password not in (workdir / "data" / "server.log").read_text()
    assert password not in (workdir / "data" / "tenantctl-server.json").read_text()


def test_a_data_dir_the_postgres_user_cannot_reach_is_a_clear_error(tmp_path: Path) -> None:
    hidden = tmp_path / "private"  # pytest's tmp_path is mode 700 under /tmp/pytest-of-root
    hidden.parent.chmod(0o700)
    with pytest.raises(BackendError, match="cannot reach"):
        start_server(hidden / "data", name="x", admin_password="pw")


def test_one_server_per_cluster_under_the_state_dir(workdir: Path) -> None:
    model = model_from_text('clusters = { alpha = {}, beta = {} }\nclients = [\n'
                            '  { name = "t1", databases = { app = true }, allowed_ips = ["3.3.3.3/32"], '
                            'rds_iam_auth = true, cluster = "beta" },\n]\n')
    state = workdir / ".tenantctl"
    servers = up_local_clusters(model, state)
    assert sorted(servers) == ["alpha", "beta"] and servers["alpha"].port != servers["beta"].port
    assert up_local_clusters(model, state) == servers
    secret = state / "local" / "postgres" / "alpha" / "admin-password"
    assert secret.stat().st_mode & 0o777 == 0o600
    with psycopg.connect(servers["beta"].dsn(password=local_admin_password(state, "beta"))) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert all(s.running for s in local_clusters_status(state).values())
    assert sorted(down_local_clusters(state)) == ["alpha", "beta"]
    assert not any(s.running for s in local_clusters_status(state).values())


def test_local_up_under_a_directory_the_service_user_cannot_traverse_says_exactly_what_to_run() -> None:
    """A project under a mode-700 directory (a home directory, pytest's tmp_path): the hint, followed
    literally, is enough."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.getuid() != 0:
        pytest.skip("the servers run as the postgres user only when tenantctl runs as root")
    outer = Path(tempfile.mkdtemp(prefix="tenantctl-private-", dir="/tmp"))  # mode 700
    project = outer / "project"
    project.mkdir()
    (project / "clients.tfvars").write_text(
        'clusters = { main = { min_acu = 0.5, max_acu = 1 } }\n'
        'clients = [{ name = "a", databases = { app = true }, allowed_ips = ["109.241.200.168/32"], '
        'rds_iam_auth = true }]\n')

    def tenantctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tenantctl.cli.main", *args], cwd=project, capture_output=True,
                              text=True, timeout=300, check=False)

    try:
        refused = tenantctl("local", "up")
        assert refused.returncode == 1, refused.stderr
        hint = next(line for line in refused.stderr.splitlines() if line.startswith("hint:"))
        command = hint.split("`")[1]
        assert command == f"chmod o+x {outer}", hint
        subprocess.run(command, shell=True, check=True)
        started = tenantctl("local", "up")
        assert started.returncode == 0, started.stderr
        assert "main=postgresql://127.0.0.1:" in started.stdout + started.stderr
    finally:
        tenantctl("local", "down")
        shutil.rmtree(outer, ignore_errors=True)
