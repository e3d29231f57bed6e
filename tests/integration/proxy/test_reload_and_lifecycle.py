"""Hot reload under load, invalid maps, removed tenants, fuzzed startup packets and SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_it_support import TENANTS, Clusters, ProxyProcess, StartProxy

from tenantctl.fsutil import atomic_write_bytes
from tenantctl.proxy import wire
from tenantctl.routing.store import write_map

pytestmark = pytest.mark.postgres


def test_reload_under_200_concurrent_sessions_drops_none(clusters: Clusters, proxy: ProxyProcess,
                                                         routes_file: Path) -> None:
    sessions = 200
    users = ["alice" if n % 2 else "bob" for n in range(sessions)]

    async def main() -> tuple[int, int, list[str]]:
        connections = [
            await psycopg.AsyncConnection.connect(proxy.dsn(u, "app", clusters.tenants[u].password), autocommit=True)
            for u in users
        ]
        stop = asyncio.Event()
        errors: list[str] = []
        done = 0

        async def worker(connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
            nonlocal done
            while not stop.is_set():
                try:
                    await connection.execute("SELECT 1")
                    done += 1
                except psycopg.Error as error:
                    errors.append(str(error))
                    return
                await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(worker(c)) for c in connections]
        for serial in range(2, 7):
            write_map(routes_file, clusters.routing_map(serial))
            await asyncio.to_thread(proxy.wait_metric, "tenantctl_proxy_routing_map_serial",
                                    lambda v, s=serial: v == s)
        proxy.signal(signal.SIGHUP)  # forced reload of the same map: counted as unchanged
        await asyncio.to_thread(proxy.wait_metric, 'tenantctl_proxy_reloads_total{result="unchanged"}',
                                lambda v: v >= 1)
        before = done
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        for connection in connections:
            row = await (await connection.execute("SELECT current_database()")).fetchone()
            assert row is not None
            await connection.close()
        return before, done, errors

    before, done, errors = asyncio.run(main())
    assert errors == []
    assert done > before > 0
    assert proxy.metric('tenantctl_proxy_reloads_total{result="ok"}') == 5
    assert proxy.metric("tenantctl_proxy_routing_map_serial") == 6


def test_invalid_map_is_rejected_and_the_old_one_keeps_serving(clusters: Clusters, proxy: ProxyProcess,
                                                              routes_file: Path) -> None:
    atomic_write_bytes(routes_file, routes_file.read_bytes().replace(b'"max_connections":400', b'"max_connections":1'))
    proxy.wait_metric('tenantctl_proxy_reloads_total{result="failed"}', lambda v: v == 1)
    assert "checksum mismatch" in proxy.log()
    atomic_write_bytes(routes_file, b'{"format": "something else"}')
    proxy.wait_metric('tenantctl_proxy_reloads_total{result="failed"}', lambda v: v == 2)
    assert proxy.metric("tenantctl_proxy_routing_map_serial") == 1
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw")) as one, \
            psycopg.connect(proxy.dsn("alice", "app", "alice-pw")) as two:  # limit is still 400, not 1
        assert one.execute("SELECT 1").fetchone() == two.execute("SELECT 1").fetchone() == (1,)


def test_removed_tenant_gets_no_new_connections_but_live_sessions_continue(
        clusters: Clusters, proxy: ProxyProcess, routes_file: Path) -> None:
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw")) as live:
        live.execute("SELECT 1")
        write_map(routes_file, clusters.routing_map(2, tenants=tuple(t for t in TENANTS if t.user != "alice")))
        proxy.wait_metric("tenantctl_proxy_routing_map_serial", lambda v: v == 2)
        with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "alice"'):
            psycopg.connect(proxy.dsn("alice", "app", "alice-pw"))
        assert live.execute("SELECT current_user").fetchone() == ("alice",)


def _startup(params: list[tuple[str, str]]) -> bytes:
    return wire.encode_startup_message(wire.StartupMessage(wire.PROTOCOL_3_0, tuple(params)))


_text = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=20)
_packets = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=120).map(lambda b: struct.pack("!i", len(b) + 4) + b),
    st.tuples(st.integers(-(2**31), 2**31 - 1), st.binary(max_size=60)).map(
        lambda t: struct.pack("!ii", len(t[1]) + 8, t[0]) + t[1]),
    st.lists(st.tuples(st.sampled_from(["user", "database", "options", "application_name"]) | _text, _text),
             max_size=5).map(_startup),
    st.sampled_from(["alice", "bob", "mallory"]).map(lambda u: _startup([("user", u), ("database", "app")])),
    st.just(wire.encode_ssl_request() + wire.encode_gssenc_request() + b"\xff" * 10),
    st.integers(0, 2**31 - 1).map(lambda pid: wire.encode_cancel_request(pid, b"abcd")),
)


def _send_and_hang_up(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packets=st.lists(_packets, min_size=1, max_size=3))
def test_fuzzed_startup_packets_never_crash_or_leak(clusters: Clusters, proxy: ProxyProcess,
                                                    packets: list[bytes]) -> None:
    answer = _send_and_hang_up(proxy.port, b"".join(packets))
    assert answer == b"" or answer[:1] in (b"E", b"N", b"R") or answer[:1] == b"S"
    assert proxy.process.poll() is None


def test_after_fuzzing_no_backend_connection_is_left(clusters: Clusters, proxy: ProxyProcess) -> None:
    # Half-open handshakes against both clusters, then hang up.
    for user in ("alice", "bob") * 10:
        _send_and_hang_up(proxy.port, _startup([("user", user), ("database", "app")]))
    for user in ("alice", "bob", "limited"):
        proxy.wait_metric(f'tenantctl_proxy_tenant_connections{{tenant="{user}"}}', lambda v: v == 0)
    for cluster in ("c1", "c2"):
        deadline = time.monotonic() + 15
        while clusters.backend_sessions(cluster) != 0:
            assert time.monotonic() < deadline, f"{cluster} still has client sessions"
            time.sleep(0.1)
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw")) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_sigterm_drains_then_exits(clusters: Clusters, routes_file: Path, start_proxy: StartProxy) -> None:
    proxy = start_proxy(routes_file, "--drain-timeout", "20")
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw")) as connection:
        proxy.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:  # the listener closes: new clients are refused
            try:
                socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(urllib.error.HTTPError) as health:
            urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/healthz", timeout=5)
        assert health.value.code == 503 and json.loads(health.value.read())["status"] == "draining"
        assert connection.execute("SELECT 'still served'").fetchone() == ("still served",)
        assert proxy.process.poll() is None
    started = time.monotonic()
    assert proxy.process.wait(timeout=15) == 0
    assert time.monotonic() - started < 5


def test_drain_timeout_closes_remaining_sessions(clusters: Clusters, routes_file: Path,
                                                 start_proxy: StartProxy) -> None:
    proxy = start_proxy(routes_file, "--drain-timeout", "1")
    with psycopg.connect(proxy.dsn("bob", "app", "bob-pw")) as connection:
        connection.execute("SELECT 1")
        proxy.signal(signal.SIGTERM)
        assert proxy.process.wait(timeout=15) == 0
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
    assert "1 sessions closed at the drain timeout" in proxy.log()
