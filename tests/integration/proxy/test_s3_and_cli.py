"""`tenantctl routes build|show|check|publish` end to end, S3 publish/load against a real moto server,
and a proxy fleet member that serves (and reloads) its map from S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest
from proxy_it_support import Clusters, StartProxy

from tenantctl.local.moto import LOCAL_CREDENTIALS, ensure_moto, stop_moto
from tenantctl.routing import load_map, read_map
from tenantctl.routing.s3 import fetch_map, publish_map

pytestmark = pytest.mark.postgres

CLIENTS = """
settings = { allow_private_source_ips = true }
clusters = {
  c1 = { min_acu = 0.5, max_acu = 4 }
  c2 = { min_acu = 0.5, max_acu = 4 }
}
clients = [
  { name = "alice", databases = { app = true, reports = true }, allowed_ips = ["127.0.0.1/32"],
    rds_iam_auth = false, cluster = "c1" },
  { name = "bob", databases = { app = true }, allowed_ips = ["127.0.0.1/32"], rds_iam_auth = false, cluster = "c2" },
]
"""


def tenantctl(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenantctl.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=120, check=False)


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    state = Path(f"/tmp/tenantctl-proxy-moto-{os.getpid()}")
    server = ensure_moto(state)
    env = {**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": "eu-west-1",
           "AWS_ENDPOINT_URL_S3": f"http://{server.host}:{server.port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3").create_bucket(Bucket="routes", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    try:
        yield env
    finally:
        stop_moto(state)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def project(clusters: Clusters, workdir: Path) -> Path:
    (workdir / "clients.tfvars").write_text(CLIENTS)
    (workdir / "endpoints.json").write_text(json.dumps(
        {name: {"host": s.host, "port": s.port} for name, s in clusters.servers.items()}))
    return workdir


def test_routes_build_show_check(project: Path) -> None:
    build = tenantctl("routes", "build", "-c", "clients.tfvars", "-e", "endpoints.json", "-o", "routes.json",
                      "--format", "json", cwd=project)
    assert build.returncode == 0, build.stderr
    summary = json.loads(build.stdout)
    assert summary["serial"] == 1 and summary["tenants"] == 2 and summary["written"] is True
    again = json.loads(tenantctl("routes", "build", "-c", "clients.tfvars", "-e", "endpoints.json",
                                 "-o", "routes.json", "--format", "json", cwd=project).stdout)
    assert again["serial"] == 1 and again["written"] is False
    routing_map = read_map(project / "routes.json")
    assert routing_map.tenants["alice"].databases == {"app": "alice_app", "reports": "alice_reports"}
    show = tenantctl("routes", "show", "routes.json", "--tenant", "bob", "--format", "json", cwd=project)
    assert json.loads(show.stdout)["tenants"] == {"bob": {
        "allowed_cidrs": ["127.0.0.1/32"], "cluster": "c2", "databases": {"app": "bob_app"},
        "max_connections": 100, "tenant": "bob"}}
    assert "alice_reports" in tenantctl("routes", "show", "routes.json", cwd=project).stdout
    check = tenantctl("routes", "check", "routes.json", "-c", "clients.tfvars", "-e", "endpoints.json", cwd=project)
    assert check.returncode == 0 and "current" in check.stdout
    (project / "clients.tfvars").write_text(CLIENTS.replace("reports = true", "reports = false"))
    stale = tenantctl("routes", "check", "routes.json", "-c", "clients.tfvars", "-e", "endpoints.json", cwd=project)
    assert stale.returncode == 1 and "STALE" in stale.stdout
    rebuilt = json.loads(tenantctl("routes", "build", "-c", "clients.tfvars", "-e", "endpoints.json",
                                   "-o", "routes.json", "--format", "json", cwd=project).stdout)
    assert rebuilt["serial"] == 2


def test_routes_check_refuses_a_corrupt_map_with_exit_2(project: Path) -> None:
    (project / "routes.json").write_text('{"format": "tenantctl.routing/v1"}')
    check = tenantctl("routes", "check", "routes.json", cwd=project)
    assert check.returncode == 2
    assert "routes.json: invalid routing map: missing member(s)" in check.stderr
    missing_endpoint = tenantctl("routes", "build", "-c", "clients.tfvars", "-e", "nope.json", cwd=project)
    assert missing_endpoint.returncode == 2 and "nope.json" in missing_endpoint.stderr


def test_publish_and_load_through_s3(project: Path, s3_env: dict[str, str]) -> None:
    build = tenantctl("routes", "build", "-c", "clients.tfvars", "-e", "endpoints.json", "-o", "routes.json",
                      "--publish", "s3://routes/prod/routes.json", env=s3_env, cwd=project)
    assert build.returncode == 0, build.stderr
    local = read_map(project / "routes.json")
    assert load_map("s3://routes/prod/routes.json") == local
    fetched = fetch_map("s3://routes/prod/routes.json")
    assert fetch_map("s3://routes/prod/routes.json", if_none_match=fetched.etag).data == b""
    show = tenantctl("routes", "check", "s3://routes/prod/routes.json", env=s3_env)
    assert show.returncode == 0, show.stderr


def test_proxy_serves_and_reloads_its_map_from_s3(clusters: Clusters, project: Path, s3_env: dict[str, str],
                                                 start_proxy: StartProxy) -> None:
    url = "s3://routes/fleet/routes.json"
    assert tenantctl("routes", "build", "-c", "clients.tfvars", "-e", "endpoints.json", "-o", "routes.json",
                     "--publish", url, env=s3_env, cwd=project).returncode == 0
    proxy = start_proxy(url, env=s3_env)
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw")) as connection:
        assert connection.execute("SELECT current_database()").fetchone() == ("alice_app",)
    (project / "clients.tfvars").write_text(CLIENTS.replace('reports = true', 'reports = true, extra = true'))
    assert tenantctl("routes", "build", "-c", "clients.tfvars", "-e", "endpoints.json", "-o", "routes.json",
                     "--publish", url, env=s3_env, cwd=project).returncode == 0
    proxy.wait_metric("tenantctl_proxy_routing_map_serial", lambda v: v == 2)
    publish_map(url, read_map(project / "routes.json"))  # same content again: no reload
    assert proxy.metric('tenantctl_proxy_reloads_total{result="failed"}') == 0
