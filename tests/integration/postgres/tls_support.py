"""A test CA, and a real local PostgreSQL server serving a certificate it signed for an endpoint name.

Both come from the product's own local CA (``tenantctl.local.pki``) and ``ensure_server_tls``, which the
local target uses for its clusters; here the server stands in for an Aurora cluster of the aws target."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tenantctl.local.pgserver import PgServer, ensure_server_tls, start_server, stop_server
from tenantctl.local.pki import ensure_ca

PASSWORD = "tls-admin-pw"
ENDPOINT = "main.cluster-abc123.eu-west-1.rds.amazonaws.com"


def make_ca(directory: Path) -> Path:
    """A CA of its own under ``directory``: its certificate (ca.pem)."""
    return ensure_ca(directory)


@contextmanager
def tls_server(hostname: str = ENDPOINT) -> Iterator[tuple[PgServer, Path]]:
    root = Path(tempfile.mkdtemp(prefix="tenantctl-tls-", dir="/tmp"))
    root.chmod(0o755)
    server = start_server(root / "data", name="main", admin_password=PASSWORD, unsafe_fast=True)
    try:
        ensure_server_tls(server, root / "pki", (hostname,))
        with psycopg.connect(server.dsn(password=PASSWORD), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        yield server, make_ca(root / "pki")
    finally:
        stop_server(server.data_dir)
        shutil.rmtree(root, ignore_errors=True)
