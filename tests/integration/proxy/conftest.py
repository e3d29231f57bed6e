"""Fixtures of the proxy integration tests: two real PostgreSQL servers with tenants, proxy processes.

Two servers (clusters ``c1`` and ``c2``) are started once per test session with
``tenantctl.local.pgserver``; tenants are created with psycopg. Each test starts the proxy as a
subprocess (``python -m tenantctl.cli.main proxy``) on free ports and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from proxy_it_support import (
    ADMIN_PASSWORD,
    Clusters,
    ProxyProcess,
    create_tenants,
)

from tenantctl.local.pgserver import PgServer, start_server, stop_server
from tenantctl.proxy.native import native_available
from tenantctl.routing.store import write_map


@pytest.fixture(scope="session")
def clusters() -> Iterator[Clusters]:
    root = Path(tempfile.mkdtemp(prefix="tenantctl-proxy-it-", dir="/tmp"))
    os.chmod(root, 0o755)  # the postgres OS user must traverse it
    servers: dict[str, PgServer] = {}
    try:
        for name in ("c1", "c2"):
            servers[name] = start_server(root / name, name=name, admin_password=ADMIN_PASSWORD,
                                         unsafe_fast=True, max_connections=300)
            create_tenants(servers[name], name)
        yield Clusters(servers, root)
    finally:
        for name in servers:
            with contextlib.suppress(Exception):
                stop_server(root / name)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tenantctl-proxy-test-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def routes_file(clusters: Clusters, workdir: Path) -> Path:
    path = workdir / "routes.json"
    write_map(path, clusters.routing_map())
    return path


@pytest.fixture(params=["native", "python"])
def relay(request: pytest.FixtureRequest) -> str:
    """Every proxy test runs with both relays: the native epoll thread and the asyncio one."""
    mode = str(request.param)
    if mode == "native" and not native_available():
        pytest.fail("the native relay was not built (a C compiler and Python headers are needed)")
    return mode


@pytest.fixture
def start_proxy(workdir: Path, relay: str) -> Iterator[object]:
    started: list[ProxyProcess] = []

    def start(routes: Path | str, *extra: str, env: dict[str, str] | None = None) -> ProxyProcess:
        proxy = ProxyProcess(str(routes), workdir, "--relay", relay, *extra, env=env)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def proxy(start_proxy: object, routes_file: Path) -> ProxyProcess:
    assert callable(start_proxy)
    started = start_proxy(routes_file)
    assert isinstance(started, ProxyProcess)
    return started


