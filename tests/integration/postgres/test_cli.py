"""The CLI end to end on the local target: pg plan/apply, verify, credentials; no password leaks anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tenantctl.errors import ExitCode
from tenantctl.local.moto import stop_moto
from tenantctl.local.pgserver import down_local_clusters, local_admin_password

pytestmark = pytest.mark.postgres

TENANTS: list[dict[str, object]] = [
    {"name": "alpha", "databases": ["db1", "db2"], "cluster": "one"},
    {"name": "beta", "iam": True, "cluster": "one"},
    {"name": "gamma", "cluster": "two"},
    {"name": "delta", "iam": True, "cluster": "two"},
]


@pytest.fixture
def project(clients_text: Callable[..., str]) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tenantctl-cli-"))
    root.chmod(0o755)
    (root / "clients.tfvars").write_text(clients_text(TENANTS, clusters=("one", "two")))
    state = root / ".tenantctl"
    try:
        started = tenantctl(root, "local", "up", "--format", "json")
        assert started.returncode == 0, started.stderr
        # As on aws, a cluster is reached through its applied cluster stack's outputs (endpoint name, admin
        # secret): the first apply creates the clusters and defers the tenants' Postgres objects.
        planned = tenantctl(root, "plan", "--parallel", "1")
        assert planned.returncode == 0, planned.stdout + planned.stderr
        assert "roles and databases of tenant alpha" in planned.stdout  # deferred, named
        applied = tenantctl(root, "apply", "--auto-approve", "--parallel", "1")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        servers = json.loads(started.stdout)["postgres"]["clusters"]
        assert sorted(servers) == ["one", "two"]
        for name, server in servers.items():  # log every statement: proves only verifiers reach the server
            with psycopg.connect(host=server["host"], port=server["port"], user=server["admin_user"],
                                 password=local_admin_password(state, name), dbname="postgres",
                                 autocommit=True) as c:
                c.execute("ALTER SYSTEM SET log_statement = 'all'")
                c.execute("SELECT pg_reload_conf()")
        yield root
    finally:
        tenantctl(root, "local", "down")
        down_local_clusters(state)  # in case the command failed
        stop_moto(state)
        shutil.rmtree(root, ignore_errors=True)


def tenantctl(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenantctl.cli.main", *args], cwd=project, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def test_plan_apply_verify_credentials_and_no_password_leaks(project: Path) -> None:
    outputs: list[str] = []

    def run(*args: str, expect: int = 0) -> Any:
        result = tenantctl(project, *args)
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == expect, result.stdout + result.stderr
        return result

    planned = json.loads(run("pg", "plan", "--format", "json", "--detailed-exitcode",
                             expect=ExitCode.CHANGES).stdout)
    assert {p["cluster"] for p in planned["clusters"]} == {"one", "two"}
    text_plan = run("pg", "plan").stdout
    assert "alpha" in text_plan and "create database alpha_db1" in text_plan
    run("pg", "apply")
    assert "no changes" in run("pg", "plan").stdout
    run("pg", "plan", "--detailed-exitcode")

    report = json.loads(run("verify", "--format", "json").stdout)
    assert report["ok"] is True and report["matrix"]["alpha"]["gamma"] == "denied"
    assert "isolation holds" in run("verify").stdout

    masked = run("credentials", "alpha").stdout
    assert "alpha_db1" in masked and "********" in masked
    revealed = tenantctl(project, "credentials", "alpha", "--reveal", "--format", "json")
    password = json.loads(revealed.stdout)["dsn"].split("password=")[1].split()[0]
    direct = json.loads(revealed.stdout)
    assert direct["sslmode"] == "verify-full" and direct["hostaddr"] == "127.0.0.1", direct
    with psycopg.connect(direct["dsn"]) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == ("alpha",)

    # break isolation by hand: verify exits 5 (BREACH)
    state = project / ".tenantctl"
    target = _resolve(project, "one")
    assert target.sslmode == "verify-full" and target.host.endswith(".rds.amazonaws.com")
    with psycopg.connect(**target.libpq_params(), user=target.admin_user,
                         password=target.admin_password, dbname="postgres", autocommit=True) as conn:
        assert conn.info.pgconn.ssl_in_use
        conn.execute("GRANT CONNECT ON DATABASE alpha_db1 TO PUBLIC")
    breach = run("verify", expect=ExitCode.BREACH)
    assert "BREACH" in breach.stdout

    # a stale plan is refused with exit 3
    run("pg", "plan")
    with psycopg.connect(**target.libpq_params(), user=target.admin_user,
                         password=target.admin_password, dbname="postgres", autocommit=True) as conn:
        conn.execute("ALTER ROLE alpha CONNECTION LIMIT 1")
    run("pg", "apply", expect=ExitCode.REFUSED)

    gamma_password = _stored_password(project, "gamma")
    for secret in (password, gamma_password):
        assert len(secret) > 20
        for output in outputs:
            assert secret not in output
        for path in state.rglob("*"):
            if path.is_file() and "moto" not in path.name:
                assert secret.encode() not in path.read_bytes(), path
    logs = "".join(p.read_text(errors="replace") for p in state.rglob("server.log"))
    assert "ALTER ROLE" in logs and "SCRAM-SHA-256$" in logs  # statements are logged, as verifiers only
    assert password not in logs and gamma_password not in logs


def _stored_password(project: Path, tenant: str) -> str:
    result = tenantctl(project, "credentials", tenant, "--reveal", "--format", "json")
    dsn = json.loads(result.stdout)["dsn"]
    return str(dsn.split("password=")[1].split()[0])


def test_verify_through_the_real_proxy(project: Path) -> None:
    from tenantctl.local.pgserver import free_port, local_clusters_status

    assert tenantctl(project, "pg", "plan").returncode == 0
    assert tenantctl(project, "pg", "apply").returncode == 0
    state = project / ".tenantctl"
    endpoints = {name: {"host": status.server.host, "port": status.server.port}
                 for name, status in local_clusters_status(state).items() if status.server}
    (project / "endpoints.json").write_text(json.dumps(endpoints))
    built = tenantctl(project, "routes", "build", "--endpoints", "endpoints.json", "--out", "routes.json")
    assert built.returncode == 0, built.stderr
    port = free_port()
    proxy = subprocess.Popen([sys.executable, "-m", "tenantctl.cli.main", "proxy", "--routes", "routes.json",
                              "--listen", f"127.0.0.1:{port}", "--log-level", "warning"], cwd=project,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_port(port, proxy)
        result = tenantctl(project, "verify", "--via", f"127.0.0.1:{port}", "--format", "json")
        report = json.loads(result.stdout)
        assert result.returncode == 0, result.stdout + result.stderr
        assert report["via"] == f"127.0.0.1:{port}" and report["ok"] is True
        assert report["matrix"]["alpha"] == {"alpha": "ok", "beta": "denied", "delta": "denied", "gamma": "denied"}

        target = _resolve(project, "two")
        with psycopg.connect(**target.libpq_params(), user=target.admin_user,
                             password=target.admin_password, dbname="postgres", autocommit=True) as conn:
            conn.execute("GRANT gamma_owner TO delta")
        breached = tenantctl(project, "verify", "--via", f"127.0.0.1:{port}", "--format", "json")
        assert breached.returncode == ExitCode.BREACH, breached.stdout + breached.stderr
        assert json.loads(breached.stdout)["matrix"]["delta"]["gamma"] == "BREACH"
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()


def _resolve(project: Path, cluster: str) -> Any:
    """The one resolver, as the CLI uses it: outputs, moto's Secrets Manager, TLS verify-full."""
    from tenantctl.model import load_model
    from tenantctl.workflow.clusters import cluster_resolver

    model = load_model(project / "clients.tfvars")
    return cluster_resolver(model, project / ".tenantctl", start_local_servers=False).resolve(cluster)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"proxy exited: {process.stderr.read().decode() if process.stderr else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("proxy did not listen in time")
