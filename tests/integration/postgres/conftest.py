"""Real PostgreSQL servers (and a real moto server for Secrets Manager) for the Postgres engine's tests.

One data directory is initialised per session and copied for every test (``cp -a`` is much faster than
initdb), so each test gets pristine servers. Servers and moto are stopped even when a test fails.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tenantctl.aws import session as aws_session
from tenantctl.aws.secrets import SecretsManagerStore
from tenantctl.local.moto import ensure_moto, stop_moto
from tenantctl.local.pgserver import PgServer, start_server, stop_server
from tenantctl.model import model_from_text
from tenantctl.model.desired import DesiredState, desired_state
from tenantctl.postgres.connect import ClusterConnection, StaticClusterResolver

ADMIN_PASSWORD = "adm-" + secrets.token_urlsafe(16)


@pytest.fixture(scope="session")
def pg_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tenantctl-pgtests-"))
    root.chmod(0o755)  # the postgres OS user must traverse it
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def golden_data_dir(pg_root: Path) -> Path:
    data_dir = pg_root / "golden"
    start_server(data_dir, name="golden", admin_password=ADMIN_PASSWORD, unsafe_fast=True)
    stop_server(data_dir)
    return data_dir


ServerFactory = Callable[[str], tuple[PgServer, ClusterConnection]]


@pytest.fixture
def pg_servers(pg_root: Path, golden_data_dir: Path) -> Iterator[ServerFactory]:
    """Start a fresh server per cluster name: ``server, connection = pg_servers("main")``."""
    started: list[Path] = []
    workdir = Path(tempfile.mkdtemp(prefix="t-", dir=pg_root))
    workdir.chmod(0o755)

    def start(name: str) -> tuple[PgServer, ClusterConnection]:
        data_dir = workdir / name
        subprocess.run(["cp", "-a", str(golden_data_dir), str(data_dir)], check=True)
        (data_dir / "postmaster.pid").unlink(missing_ok=True)
        started.append(data_dir)
        server = start_server(data_dir, name=name, admin_password=ADMIN_PASSWORD, unsafe_fast=True)
        return server, ClusterConnection(name, server.host, server.port, server.admin_user, ADMIN_PASSWORD)

    yield start
    for data_dir in started:
        stop_server(data_dir)
    shutil.rmtree(workdir, ignore_errors=True)


def resolver_for(*connections: ClusterConnection) -> StaticClusterResolver:
    return StaticClusterResolver({c.cluster: c for c in connections})


@pytest.fixture(scope="session")
def moto_state(pg_root: Path) -> Iterator[Path]:
    state = pg_root / "moto-state"
    ensure_moto(state)
    yield state
    stop_moto(state)


@pytest.fixture
def secret_store(moto_state: Path) -> SecretsManagerStore:
    """A real Secrets Manager API (moto server); each test uses its own name prefix."""
    from tenantctl.local.moto import moto_status

    server = moto_status(moto_state)
    assert server is not None
    target = aws_session.AwsTarget(region="eu-west-1", endpoint_url=server.url)
    return SecretsManagerStore(aws_session.client(target, "secretsmanager"))


def clients_text_of(tenants: list[dict[str, object]], *, clusters: tuple[str, ...] = ("main",),
                    prefix: str = "") -> str:
    """An HCL clients file: tenants as dicts (name, databases list, iam bool, cluster)."""
    head = 'settings = { target = "local", allow_private_source_ips = true' + (
        f', prefix = "{prefix}"' if prefix else "") + " }\n"
    head += "clusters = {\n" + "".join(f"  {c} = {{}}\n" for c in clusters) + "}\n"
    body = ""
    for tenant in tenants:
        dbs = ", ".join(f"{d} = true" for d in tenant.get("databases", ["app"]))  # type: ignore[attr-defined]
        iam = "true" if tenant.get("iam") else "false"
        body += (f'  {{ name = "{tenant["name"]}", databases = {{ {dbs} }}, allowed_ips = ["127.0.0.1/32"], '
                 f'rds_iam_auth = {iam}, cluster = "{tenant.get("cluster", clusters[0])}" }},\n')
    return head + "clients = [\n" + body + "]\n"


@pytest.fixture
def desired_of() -> Callable[..., DesiredState]:
    """``desired_of([{"name": "a", "databases": ["x"], "iam": False, "cluster": "main"}], clusters=...)``."""

    def build(tenants: list[dict[str, object]], *, clusters: tuple[str, ...] = ("main",),
              prefix: str = "") -> DesiredState:
        return desired_state(model_from_text(clients_text_of(tenants, clusters=clusters, prefix=prefix)))

    return build


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


def unique_prefix() -> str:
    """Secrets live in one moto server per session: a per-test name prefix keeps tests apart."""
    return "t" + secrets.token_hex(3) + "_"


@pytest.fixture(name="clients_text")
def clients_text_fixture() -> Callable[..., str]:
    return clients_text_of
