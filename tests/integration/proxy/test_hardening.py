"""Attacks on the proxy's admission, through the real proxy to real servers (issue: hardening).

Each test reproduces one way a hostile or careless client got past the proxy before, with raw
startup packets where a normal client library would not send them.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import struct
import time

import psycopg
import pytest
from proxy_it_support import Clusters, ProxyProcess, raw_exchange  # type: ignore[import-not-found]

from tenantctl.proxy import wire

pytestmark = pytest.mark.postgres


def startup(*params: tuple[str, str]) -> bytes:
    return wire.encode_startup_message(wire.StartupMessage(wire.PROTOCOL_3_0, params))


def refused_and_gone(port: int, packet: bytes) -> bytes:
    """Send a startup packet, take the first answer (an error, or the mock SCRAM offer), and hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(packet)
        return sock.recv(65536)


def error_fields(answer: bytes) -> dict[str, str]:
    assert answer[:1] == b"E", answer[:100]
    (length,) = struct.unpack("!i", answer[1:5])
    return wire.decode_error_fields(answer[5:1 + length])


def test_a_second_user_key_never_reaches_the_server(clusters: Clusters, proxy: ProxyProcess) -> None:
    admin_user = clusters.servers["c1"].admin_user
    before = clusters.backend_sessions("c1")
    for params in ((("user", "alice"), ("database", "app"), ("user", admin_user)),
                   (("user", "alice"), ("user", admin_user), ("database", "app")),
                   (("database", "app"), ("user", "alice"), ("database", "postgres"))):
        fields = error_fields(raw_exchange(proxy.port, startup(*params)))
        assert fields["C"] == "08P01" and "given more than once" in fields["M"], fields
    assert clusters.backend_sessions("c1") == before
    assert proxy.metric('tenantctl_proxy_rejections_total{reason="duplicate_startup_parameter",tenant=""}') == 3
    assert proxy.metric('tenantctl_proxy_tenant_connections_total{tenant="alice"}') == 0
    assert "duplicate_startup_parameter" in proxy.log()


def test_stalled_handshakes_do_not_lock_a_tenant_out(clusters: Clusters, proxy: ProxyProcess) -> None:
    # "limited" may hold 2 connections. 20 clients start SCRAM and never answer the challenge.
    stalled: list[socket.socket] = []
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.sendall(startup(("user", "limited"), ("database", "app")))
            assert sock.recv(1)[:1] == b"R"  # the server's SASL challenge: the handshake is pending
            stalled.append(sock)
        held = [psycopg.connect(proxy.dsn("limited", "app", "limited-pw")) for _ in range(2)]
        try:
            assert all(c.execute("SELECT 1").fetchone() == (1,) for c in held)
            with pytest.raises(psycopg.OperationalError, match='too many connections for role "limited"'):
                psycopg.connect(proxy.dsn("limited", "app", "limited-pw"))  # the limit itself still holds
        finally:
            for connection in held:
                connection.close()
    finally:
        for sock in stalled:
            sock.close()


def test_pending_handshakes_are_capped_per_address(clusters: Clusters, start_proxy: object,
                                                   routes_file: object) -> None:
    assert callable(start_proxy)
    proxy = start_proxy(routes_file, "--max-pending-per-address", "5")
    stalled = []
    try:
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.sendall(startup(("user", "alice"), ("database", "app")))
            assert sock.recv(1)[:1] == b"R"
            stalled.append(sock)
        fields = error_fields(raw_exchange(proxy.port, startup(("user", "alice"), ("database", "app"))))
        assert fields["C"] == "53300"
        assert proxy.metric('tenantctl_proxy_rejections_total{reason="too_many_pending_handshakes",tenant=""}') == 1
    finally:
        for sock in stalled:
            sock.close()
    deadline = time.monotonic() + 15
    while True:  # the slots come back once the stalled clients are gone
        try:
            with psycopg.connect(proxy.dsn("alice", "app", "alice-pw")) as connection:
                assert connection.execute("SELECT 1").fetchone() == (1,)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_refusals_from_strangers_do_not_grow_the_metrics(clusters: Clusters, proxy: ProxyProcess) -> None:
    for _ in range(3):  # warm every series a refusal can create
        refused_and_gone(proxy.port, startup(("user", "faraway"), ("database", "app")))
        refused_and_gone(proxy.port, startup(("user", secrets.token_hex(8)), ("database", "app")))
    size = len(proxy.metrics().splitlines())
    for _ in range(200):
        refused_and_gone(proxy.port, startup(("user", secrets.token_hex(8)), ("database", secrets.token_hex(4))))
        refused_and_gone(proxy.port, startup(("user", "faraway"), ("database", secrets.token_hex(4))))
    proxy.wait_metric('tenantctl_proxy_rejections_total{reason="unknown_tenant",tenant=""}', lambda v: v == 203)
    text = proxy.metrics()
    assert len(text.splitlines()) == size
    assert 'tenant="faraway"' not in text


def test_a_newline_in_the_user_name_cannot_forge_a_log_line(clusters: Clusters, proxy: ProxyProcess) -> None:
    forged = "mallory\n2026-12-03 00:00:00,000 INFO tenantctl.proxy: FORGED admitted admin"
    refused_and_gone(proxy.port, startup(("user", forged), ("database", "app")))
    deadline = time.monotonic() + 10
    while "refused mallory" not in proxy.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = proxy.log()
    assert "refused mallory\\n2026" in log
    assert not any(line.startswith("2026-12-03 00:00:00,000") for line in log.splitlines())


def test_a_half_open_client_cannot_pin_a_slot_after_the_timeout(clusters: Clusters, start_proxy: object,
                                                                 routes_file: object) -> None:
    assert callable(start_proxy)
    proxy = start_proxy(routes_file, "--startup-timeout", "1", "--max-pending-per-address", "2")
    socks = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        sock.sendall(startup(("user", "limited"), ("database", "app")))
        socks.append(sock)
    time.sleep(1.5)  # both handshakes time out and give their slots back
    with psycopg.connect(proxy.dsn("limited", "app", "limited-pw")) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()
