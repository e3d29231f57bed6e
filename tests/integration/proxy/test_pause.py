"""Per-tenant pause through the control socket, against real servers and the real proxy: a paused
tenant's new connections wait (others do not), then land where the map says at resume; a pause ends
by itself; only root or the proxy's user may use the socket."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from proxy_it_support import TENANTS, Clusters, StartProxy, TenantLogin

from tenantctl.routing.store import write_map

pytestmark = pytest.mark.postgres

MOVED = TenantLogin("alice", "alice-pw", "c2", {"app": "alice_app", "reports": "alice_reports"})


@pytest.fixture
def alice_on_both(clusters: Clusters) -> Iterator[None]:
    """alice's role and database also exist on c2, as after a tenant move's copy."""
    with clusters.admin("c2") as admin:
        admin.execute("CREATE ROLE alice LOGIN PASSWORD 'alice-pw'")
        admin.execute("CREATE DATABASE alice_app OWNER alice")
    try:
        yield
    finally:
        with clusters.admin("c2") as admin:
            admin.execute("DROP DATABASE IF EXISTS alice_app WITH (FORCE)")
            admin.execute("DROP ROLE IF EXISTS alice")


def control(socket_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenantctl.cli.main", "proxy-control", *args, "--socket",
                           str(socket_path)], capture_output=True, text=True, timeout=60, check=False)


def server_port(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT inet_server_port()").fetchone()
    assert row is not None
    return int(str(row[0]))


def test_a_paused_tenant_waits_and_resumes_on_the_cluster_the_map_names(
    clusters: Clusters, start_proxy: StartProxy, routes_file: Path, workdir: Path, alice_on_both: None,
) -> None:
    socket_path = workdir / "control.sock"
    proxy = start_proxy(routes_file, "--control-socket", str(socket_path))
    assert socket_path.stat().st_mode & 0o777 == 0o600
    c1, c2 = clusters.servers["c1"].port, clusters.servers["c2"].port
    alice = proxy.dsn("alice", "app", "alice-pw")
    assert server_port(alice) == c1

    done = control(socket_path, "pause", "alice", "--max-seconds", "30", "--reason", "move")
    assert done.returncode == 0, done.stderr
    with ThreadPoolExecutor(4) as pool:
        waiting: list[Future[int]] = [pool.submit(server_port, alice) for _ in range(3)]
        started = time.monotonic()
        assert server_port(proxy.dsn("bob", "app", "bob-pw")) == c2, "another tenant is not held"
        assert time.monotonic() - started < 5
        proxy.wait_metric('tenantctl_proxy_paused_connections{tenant="alice"}', lambda v: v == 3)
        assert not any(f.done() for f in waiting), "a paused tenant's connections wait"
        assert clusters.backend_sessions("c1") == 0, "nothing reached the old cluster meanwhile"

        write_map(routes_file, clusters.routing_map(2, tenants=(MOVED, *(t for t in TENANTS if t.user != "alice"))))
        reloaded = control(socket_path, "reload")
        assert reloaded.returncode == 0 and "serial 2" in reloaded.stdout, reloaded.stdout + reloaded.stderr
        resumed = control(socket_path, "resume", "alice")
        assert resumed.returncode == 0 and "(3 queued)" in resumed.stdout, resumed.stdout + resumed.stderr
        assert [f.result(timeout=30) for f in waiting] == [c2, c2, c2], "queued connections go to the new cluster"
    assert proxy.metric('tenantctl_proxy_pauses_total{ended="resumed"}') == 1
    assert proxy.metric("tenantctl_proxy_paused_tenants") == 0


def test_a_pause_ends_by_itself_and_an_unknown_tenant_cannot_be_paused(
    clusters: Clusters, start_proxy: StartProxy, routes_file: Path, workdir: Path,
) -> None:
    socket_path = workdir / "control.sock"
    proxy = start_proxy(routes_file, "--control-socket", str(socket_path))
    assert control(socket_path, "pause", "alice", "--max-seconds", "1").returncode == 0
    started = time.monotonic()
    assert server_port(proxy.dsn("alice", "app", "alice-pw")) == clusters.servers["c1"].port
    assert 0.5 < time.monotonic() - started < 10, "held until the pause's maximum, then served"
    assert proxy.metric('tenantctl_proxy_pauses_total{ended="expired"}') == 1
    refused = control(socket_path, "pause", "nobody")
    assert refused.returncode != 0 and "not in the routing map" in refused.stderr


def test_only_root_or_the_proxys_user_may_use_the_control_socket(
    start_proxy: StartProxy, routes_file: Path, workdir: Path,
) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to act as another user")
    socket_path = workdir / "control.sock"
    start_proxy(routes_file, "--control-socket", str(socket_path))
    os.chmod(workdir, 0o755)
    os.chmod(socket_path, 0o666)  # even a socket file opened to everyone checks its peer
    # A refused peer is answered before it says anything, and the connection is closed.
    probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
             "print(s.recv(4096).decode())")
    done = subprocess.run(["runuser", "-u", "postgres", "--", "/usr/bin/python3", "-c", probe, str(socket_path)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert "permission denied" in done.stdout, done.stdout + done.stderr
    status = control(socket_path, "status", "--format", "json")
    assert '"paused": {}' in status.stdout, "the refused request paused nothing"
