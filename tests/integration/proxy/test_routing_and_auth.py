"""Real clients (psql, psycopg sync/async, pgbench) through the real proxy to two real servers."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest
from proxy_it_support import (  # type: ignore[import-not-found]
    Clusters,
    ProxyProcess,
    StartProxy,
    raw_exchange,
    raw_startup_error,
    scram_exchange,
)

from tenantctl.proxy import wire
from tenantctl.routing.document import ClusterRoute
from tenantctl.routing.store import write_map

pytestmark = pytest.mark.postgres


def psql(proxy: ProxyProcess, user: str, database: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "15"}
    return subprocess.run(
        ["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(proxy.port), "-U", user, "-d", database, "-c", sql],
        capture_output=True, text=True, env=env, timeout=60, check=False)


def test_psql_reaches_each_tenants_cluster_with_the_physical_database(clusters: Clusters, proxy: ProxyProcess) -> None:
    for user, cluster in (("alice", "c1"), ("bob", "c2")):
        tenant = clusters.tenants[user]
        result = psql(proxy, user, "app", tenant.password,
                      "SELECT current_database() || ' ' || current_user || ' ' || inet_server_port()")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{tenant.databases['app']} {user} {clusters.servers[cluster].port}"
    second = psql(proxy, "alice", "reports", "alice-pw", "SELECT current_database()")
    assert second.stdout.strip() == "alice_reports"


def test_scram_md5_and_cleartext_token_auth_pass_through(clusters: Clusters, proxy: ProxyProcess) -> None:
    for user, method in (("alice", "scram-sha-256"), ("carol", "md5"), ("dave", "password")):
        tenant = clusters.tenants[user]
        with psycopg.connect(proxy.dsn(user, "app", tenant.password)) as connection:
            row = connection.execute("SELECT current_user, current_database()").fetchone()
        assert row == (user, tenant.databases["app"]), method
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "alice"'):
        psycopg.connect(proxy.dsn("alice", "app", "wrong-password"))
    assert clusters.tenants["dave"].password not in proxy.log()


def test_psycopg_async_sessions_in_parallel_on_both_clusters(clusters: Clusters, proxy: ProxyProcess) -> None:
    async def one(user: str, n: int) -> tuple[str, int]:
        tenant = clusters.tenants[user]
        async with await psycopg.AsyncConnection.connect(proxy.dsn(user, "app", tenant.password)) as connection:
            cursor = await connection.execute("SELECT current_database(), %s::int * 2", (n,))
            row = await cursor.fetchone()
            assert row is not None
            return str(row[0]), int(row[1])

    async def main() -> list[tuple[str, int]]:
        return await asyncio.gather(*(one("alice" if n % 2 else "bob", n) for n in range(40)))

    results = asyncio.run(main())
    assert results == [("alice_app" if n % 2 else "bob_app", n * 2) for n in range(40)]


def test_large_results_and_copy_relay_intact(clusters: Clusters, proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn("bob", "app", "bob-pw")) as connection:
        row = connection.execute("SELECT md5(string_agg(repeat(i::text, 50), ',')) FROM generate_series(1, 200000) i"
                                 ).fetchone()
        rows = connection.execute("SELECT repeat('x', 1000) FROM generate_series(1, 20000)").fetchall()
        with connection.cursor().copy("COPY (SELECT i FROM generate_series(1, 50000) i) TO STDOUT") as copy:
            copied = b"".join(bytes(chunk) for chunk in copy)
    assert row is not None and len(str(row[0])) == 32
    assert len(rows) == 20000 and all(r[0] == "x" * 1000 for r in rows)
    assert copied == b"".join(f"{i}\n".encode() for i in range(1, 50001))
    received = proxy.wait_metric('tenantctl_proxy_tenant_bytes_total{tenant="bob",direction="backend_to_client"}',
                                 lambda v: v > 20_000_000)
    assert received > 20_000_000


def test_pgbench_through_the_proxy(clusters: Clusters, proxy: ProxyProcess) -> None:
    env = {**os.environ, "PGPASSWORD": "alice-pw"}
    target = ["-h", "127.0.0.1", "-p", str(proxy.port), "-U", "alice", "app"]
    init = subprocess.run(["pgbench", "-i", "-q", "-s", "1", *target], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert init.returncode == 0, init.stderr
    run = subprocess.run(["pgbench", "-n", "-T", "3", "-c", "4", "-j", "2", *target], capture_output=True,
                         text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert "number of failed transactions: 0" in run.stdout
    with clusters.admin("c1", "alice_app") as connection:
        row = connection.execute("SELECT count(*) FROM pgbench_history").fetchone()
    assert row is not None and int(str(row[0])) > 0


def test_refusals_look_like_a_wrong_password_and_are_counted(clusters: Clusters, proxy: ProxyProcess) -> None:
    wrong_password = scram_exchange(proxy.port, "alice", "app")  # a real tenant, through to its backend
    unknown_tenant = scram_exchange(proxy.port, "mallory", "app")
    unknown_database = scram_exchange(proxy.port, "alice", "postgres")
    physical_name = scram_exchange(proxy.port, "alice", "alice_app")
    not_allowed = scram_exchange(proxy.port, "faraway", "app")
    for (kinds, fields, salt), user in ((wrong_password, "alice"), (unknown_tenant, "mallory"),
                                        (unknown_database, "alice"), (physical_name, "alice"),
                                        (not_allowed, "faraway")):
        assert kinds == [b"R", b"R", b"E"]  # SASL offer, SASL continue, then the failure
        assert set(fields) == set(wrong_password[1]), (fields, wrong_password[1])  # same fields, F/L/R too
        assert {k: v for k, v in fields.items() if k != "M"} == {k: v for k, v in wrong_password[1].items()
                                                                  if k != "M"}
        assert fields["M"] == f'password authentication failed for user "{user}"'
        assert len(base64.b64decode(salt)) == 16
    assert scram_exchange(proxy.port, "mallory", "app")[2] == unknown_tenant[2], "a stable salt per user name"
    for user, database in (("mallory", "app"), ("alice", "postgres"), ("faraway", "app")):
        with pytest.raises(psycopg.OperationalError, match=f'password authentication failed for user "{user}"'):
            psycopg.connect(proxy.dsn(user, database, "alice-pw"))
    assert proxy.metric('tenantctl_proxy_rejections_total{reason="unknown_tenant",tenant=""}') == 3
    assert proxy.metric('tenantctl_proxy_rejections_total{reason="unknown_database",tenant="alice"}') == 3
    # Outside a tenant's ranges nobody can mint a per-tenant series: the refusal carries no tenant label.
    assert proxy.metric('tenantctl_proxy_rejections_total{reason="address_not_allowed",tenant=""}') == 2
    assert 'tenant="faraway"' not in proxy.metrics()
    assert "mallory" not in proxy.metrics()  # attacker-chosen names never become label values


def test_per_tenant_connection_limit(clusters: Clusters, proxy: ProxyProcess) -> None:
    held = [psycopg.connect(proxy.dsn("limited", "app", "limited-pw")) for _ in range(2)]
    try:
        with pytest.raises(psycopg.OperationalError, match='too many connections for role "limited"'):
            psycopg.connect(proxy.dsn("limited", "app", "limited-pw"))
        assert proxy.metric('tenantctl_proxy_tenant_connections{tenant="limited"}') == 2
    finally:
        for connection in held:
            connection.close()
    proxy.wait_metric('tenantctl_proxy_tenant_connections{tenant="limited"}', lambda v: v == 0)
    with psycopg.connect(proxy.dsn("limited", "app", "limited-pw")) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_unreachable_cluster_is_08001_naming_only_the_cluster(clusters: Clusters, workdir: Path,
                                                              start_proxy: StartProxy) -> None:
    closed_port = _closed_port()
    routes = workdir / "routes.json"
    write_map(routes, clusters.routing_map(clusters={"c1": ClusterRoute("127.0.0.1", closed_port),
                                                     "c2": ClusterRoute("127.0.0.1", closed_port)}))
    proxy = start_proxy(routes)
    fields = raw_startup_error(proxy.port, "alice", "app")
    assert fields["C"] == "08001"
    assert fields["M"] == 'could not connect to cluster "c1"'
    assert proxy.metric('tenantctl_proxy_tenant_connections{tenant="alice"}') == 0


def test_cancel_pg_sleep_returns_quickly_on_both_clusters(clusters: Clusters, proxy: ProxyProcess) -> None:
    for user in ("alice", "bob"):
        with psycopg.connect(proxy.dsn(user, "app", clusters.tenants[user].password)) as connection:
            timer = threading.Timer(0.5, connection.cancel)
            started = time.monotonic()
            timer.start()
            with pytest.raises(psycopg.errors.QueryCanceled):
                connection.execute("SELECT pg_sleep(30)")
            elapsed = time.monotonic() - started
            timer.join()
            assert elapsed < 2.0, f"{user}: cancel took {elapsed:.2f}s"
            connection.rollback()
            assert connection.execute("SELECT 1").fetchone() == (1,)
    assert proxy.metric('tenantctl_proxy_cancel_requests_total{result="forwarded"}') == 2


def test_forged_cancel_keys_are_dropped(clusters: Clusters, proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw")) as connection:
        backend_pid = connection.execute("SELECT pg_backend_pid()").fetchone()
        assert backend_pid is not None
        # The real pid (which clients see) with guessed secrets, and a pid nobody has.
        for pid, secret in ((int(str(backend_pid[0])), b"\x00\x00\x00\x00"), (1, b"\x00\x00\x00\x01")):
            assert raw_exchange(proxy.port, wire.encode_cancel_request(pid, secret)) == b""
        assert connection.info.backend_pid == backend_pid[0]  # the backend's own pid; only the secret is ours
        assert connection.execute("SELECT 2").fetchone() == (2,)
    proxy.wait_metric('tenantctl_proxy_cancel_requests_total{result="dropped"}', lambda v: v == 2)


def test_startup_timeout_refuses_silent_clients(clusters: Clusters, routes_file: Path, start_proxy: StartProxy) -> None:
    proxy = start_proxy(routes_file, "--startup-timeout", "1")
    started = time.monotonic()
    answer = raw_exchange(proxy.port, b"\x00\x00", timeout=20)
    assert answer[:1] == b"E"
    assert wire.decode_error_fields(answer[5:])["C"] == "08P01"
    assert time.monotonic() - started < 10
    assert proxy.metric('tenantctl_proxy_rejections_total{reason="startup_timeout",tenant=""}') == 1


def test_ssl_and_gssenc_requests_answered_n_without_a_certificate(clusters: Clusters, proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw", sslmode="prefer", gssencmode="prefer")) as connection:
        assert connection.info.pgconn.ssl_in_use is False
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_healthz_and_metrics(clusters: Clusters, proxy: ProxyProcess, relay: str) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/healthz", timeout=10) as response:
        assert response.status == 200
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["serial"] == 1 and health["tenants"] == len(clusters.tenants)
    assert health["relay"] == {"native": "native", "python": "asyncio"}[relay]
    sent = 'tenantctl_proxy_tenant_bytes_total{tenant="alice",direction="client_to_backend"}'
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw")) as connection:
        before = proxy.metric(sent)
        connection.execute("SELECT %s::text", ["x" * 5000])
        text = proxy.metrics()
        assert 'tenantctl_proxy_tenant_connections{tenant="alice"} 1' in text
        assert proxy.metric(sent) >= before + 5000  # a live session's bytes are counted at scrape time
    proxy.wait_metric('tenantctl_proxy_tenant_connections{tenant="alice"}', lambda v: v == 0)
    assert proxy.metric(sent) >= before + 5000  # and kept once it has ended
    assert proxy.metric('tenantctl_proxy_tenant_connections_total{tenant="alice"}') >= 1
    assert proxy.metric("tenantctl_proxy_routing_map_serial") == 1
    assert "alice-pw" not in proxy.metrics() and "alice-pw" not in proxy.log()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
