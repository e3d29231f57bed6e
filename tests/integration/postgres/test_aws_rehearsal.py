"""The aws target's Postgres code paths, rehearsed offline: AWS APIs served by moto
(``settings.aws_endpoint_url``), a real PostgreSQL server serving TLS for an Aurora-style endpoint name
that does not resolve, reached through a connect address (as through an SSM tunnel) with verify-full,
the admin login read from an RDS-style secret named by the cluster stack's outputs.

The aws-target stacks themselves cannot be applied here (hashicorp/aws >= 4.61 is not installable); their
outputs are recorded as an apply would record them, and the stacks are checked statically instead
(tests/unit/render/test_schema_check.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tls_support import ENDPOINT, PASSWORD, tls_server  # type: ignore[import-not-found]

from tenantctl.aws.session import AwsTarget, client
from tenantctl.local.moto import ensure_moto, stop_moto
from tenantctl.local.pgserver import PgServer
from tenantctl.terraform.manifest import AppliedManifest

pytestmark = pytest.mark.postgres

CLIENTS = """\
settings = {{
  target           = "aws"
  region           = "eu-west-1"
  aws_endpoint_url = "{moto}"
  archive          = "s3://rehearsal-archive/tenantctl"
  postgres = {{
    ssl_mode  = "verify-full"
    ca_bundle = "{ca}"
    connect   = {{ main = "127.0.0.1:{port}" }}
  }}
}}
clusters = {{ main = {{ min_acu = 0.5, max_acu = 4 }} }}
clients = [
  {{ name = "alpha", databases = {{ app = true }}, allowed_ips = ["109.241.200.168/32"], rds_iam_auth = false }},
  {{ name = "bravo", databases = {{ app = true }}, allowed_ips = ["109.241.200.169/32"], rds_iam_auth = true }},
]
"""


@pytest.fixture(scope="module")
def rehearsal() -> Iterator[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="tenantctl-awsrehearsal-", dir="/tmp"))
    root.chmod(0o755)
    moto = ensure_moto(root / "moto-state")
    try:
        with tls_server() as (server, ca):
            secrets = client(AwsTarget("eu-west-1", moto.url), "secretsmanager")
            client(AwsTarget("eu-west-1", moto.url), "s3").create_bucket(
                Bucket="rehearsal-archive", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
            arn = secrets.create_secret(Name="rds!cluster-0123456789", SecretString=json.dumps(
                {"username": server.admin_user, "password": PASSWORD}))["ARN"]
            yield {"root": root, "server": server, "ca": ca, "moto": moto.url, "arn": arn}
    finally:
        stop_moto(root / "moto-state")
        shutil.rmtree(root, ignore_errors=True)


def project(rehearsal: dict[str, Any], name: str, *, port: int | None = None, ca: str | None = None,
            arn: str | None = None) -> Path:
    server: PgServer = rehearsal["server"]
    path = rehearsal["root"] / name
    path.mkdir()
    (path / "clients.tfvars").write_text(CLIENTS.format(moto=rehearsal["moto"], ca=ca or rehearsal["ca"],
                                                        port=port or server.port))
    AppliedManifest(path / ".tenantctl" / "applied.json").record("cluster", "h", "rehearsal", {"main": {
        "endpoint": ENDPOINT, "reader_endpoint": ENDPOINT.replace(".cluster-", ".cluster-ro-"), "port": 5432,
        "cluster_resource_id": "cluster-ABC", "arn": "arn:aws:rds:eu-west-1:123456789012:cluster:main",
        "admin_secret_arn": arn or rehearsal["arn"]}})
    return path


def tenantctl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG"))}
    return subprocess.run([sys.executable, "-m", "tenantctl.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False, env=env)


def databases(server: PgServer) -> set[str]:
    with psycopg.connect(server.dsn(password=PASSWORD)) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def test_the_native_engine_reaches_an_aws_cluster_through_the_one_resolver(rehearsal: dict[str, Any]) -> None:
    root = project(rehearsal, "ok")
    planned = tenantctl(root, "pg", "plan")
    assert planned.returncode == 0, planned.stderr
    assert "alpha_app" in planned.stdout and "bravo_app" in planned.stdout
    applied = tenantctl(root, "pg", "apply")
    assert applied.returncode == 0, applied.stderr
    assert {"alpha_app", "bravo_app"} <= databases(rehearsal["server"])
    secrets = client(AwsTarget("eu-west-1", rehearsal["moto"]), "secretsmanager")
    names = {s["Name"] for s in secrets.list_secrets()["SecretList"]}
    assert "tenantctl/alpha/postgres" in names, "alpha's generated password went to (moto's) Secrets Manager"
    again = tenantctl(root, "pg", "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.parametrize(("what", "kwargs", "expected"), [
    ("missing CA bundle", {"ca": "/nonexistent/rds-global-bundle.pem"}, "the CA bundle /nonexistent"),
    ("unreadable secret", {"arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:absent"},
     "cannot read its admin secret"),
    ("unreachable endpoint", {"port": 1}, "cannot connect to cluster main"),
])
def test_bad_settings_name_the_cluster_and_change_nothing(rehearsal: dict[str, Any], what: str,
                                                           kwargs: dict[str, Any], expected: str) -> None:
    before = databases(rehearsal["server"])
    root = project(rehearsal, what.replace(" ", "-"), **kwargs)
    done = tenantctl(root, "pg", "plan")
    assert done.returncode != 0
    assert expected in done.stderr and "cluster main" in done.stderr, done.stderr
    assert databases(rehearsal["server"]) == before


def test_verify_credentials_routes_offboard_and_purge_on_the_aws_target(rehearsal: dict[str, Any]) -> None:
    """Everything that refused the aws target before: through the connect address with verify-full, the
    dumps to S3 by default (settings.archive). restore converges Terraform (hashicorp/aws >= 4.61, not
    installable here): its Postgres steps are the ones offboarding's tests already cover on local."""
    root = project(rehearsal, "lifecycle")
    assert tenantctl(root, "pg", "plan").returncode == 0 and tenantctl(root, "pg", "apply").returncode == 0
    verified = tenantctl(root, "verify", "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["matrix"]["alpha"]["bravo"] == "denied"

    shown = tenantctl(root, "credentials", "alpha", "--reveal", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    direct = json.loads(shown.stdout)
    assert (direct["host"], direct["hostaddr"], direct["sslmode"]) == (ENDPOINT, "127.0.0.1", "verify-full")
    with psycopg.connect(direct["dsn"]) as conn:  # the tenant's own path: endpoint name, tunnel, verified TLS
        assert conn.execute("SELECT current_user").fetchone() == ("alpha",) and conn.info.pgconn.ssl_in_use

    offboarded = tenantctl(root, "offboard", "alpha", "--yes", "--retain-days", "0", "--format", "json")
    assert offboarded.returncode == 0, offboarded.stdout + offboarded.stderr
    routes = json.loads((root / ".tenantctl" / "routes.json").read_text())
    assert routes["clusters"]["main"]["host"] == ENDPOINT
    assert routes["clusters"]["main"]["reader_host"] == ENDPOINT.replace(".cluster-", ".cluster-ro-")
    assert routes["clusters"]["main"]["tls"] == {"mode": "verify-full", "ca_file": str(rehearsal["ca"])}
    assert "hostaddr" not in routes["clusters"]["main"]  # the operator's tunnel is not the proxy's path
    assert "alpha" not in {r["tenant"] for r in routes["tenants"].values()}
    s3 = client(AwsTarget("eu-west-1", rehearsal["moto"]), "s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="rehearsal-archive").get("Contents", [])]
    assert any(k.startswith("tenantctl/") and "alpha_app" in k for k in keys), keys
    archived = {d for d in databases(rehearsal["server"]) if d.startswith("alpha_app__archived_")}
    assert len(archived) == 1

    purged = tenantctl(root, "purge", "--older-than", "0", "--format", "json")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not archived & databases(rehearsal["server"]), "the archived database was dropped after its dump checked"


def test_the_aws_target_without_an_archive_bucket_refuses_to_offboard(rehearsal: dict[str, Any]) -> None:
    root = project(rehearsal, "no-archive")
    clients = root / "clients.tfvars"
    clients.write_text(clients.read_text().replace('  archive          = "s3://rehearsal-archive/tenantctl"\n', ""))
    assert tenantctl(root, "pg", "plan").returncode == 0 and tenantctl(root, "pg", "apply").returncode == 0
    before = databases(rehearsal["server"])
    refused = tenantctl(root, "offboard", "bravo", "--yes")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "settings.archive" in refused.stderr
    assert databases(rehearsal["server"]) == before and "bravo" in clients.read_text()
