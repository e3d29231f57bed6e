"""Helpers of the proxy integration tests: tenants, the real proxy process, raw protocol exchanges.

Two servers (clusters ``c1`` and ``c2``) are started once per test session with
``tenantctl.local.pgserver``; tenants are created with psycopg. Each test starts the proxy as a
subprocess (``python -m tenantctl.cli.main proxy``) on free ports and stops it afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tenantctl.local.pgserver import PgServer, admin_connect
from tenantctl.proxy import wire
from tenantctl.routing.document import ClusterRoute, ClusterTls, RoutingMap, TenantRoute, seal

ADMIN_PASSWORD = "proxy-it-admin-pw"
# Stands in for an RDS IAM auth token: a long one-time string sent as a cleartext password.
IAM_LIKE_TOKEN = "iam-token-" + "x" * 900


@dataclass(frozen=True)
class TenantLogin:
    user: str
    password: str
    cluster: str
    databases: dict[str, str]  # logical -> physical
    allowed_cidrs: tuple[str, ...] = ("127.0.0.0/8",)
    max_connections: int = 400


TENANTS = (
    TenantLogin("alice", "alice-pw", "c1", {"app": "alice_app", "reports": "alice_reports"}),
    TenantLogin("carol", "carol-md5-pw", "c1", {"app": "carol_app"}),  # md5 auth on the server
    TenantLogin("dave", IAM_LIKE_TOKEN, "c1", {"app": "dave_app"}),  # cleartext ("password") auth
    TenantLogin("limited", "limited-pw", "c1", {"app": "limited_app"}, max_connections=2),
    TenantLogin("bob", "bob-pw", "c2", {"app": "bob_app"}),
    TenantLogin("faraway", "faraway-pw", "c2", {"app": "faraway_app"}, allowed_cidrs=("203.0.113.0/24",)),
)
HBA_OVERRIDES = ("host all carol 127.0.0.1/32 md5\n", "host all dave 127.0.0.1/32 password\n")


@dataclass
class Clusters:
    servers: dict[str, PgServer]
    root: Path
    tenants: dict[str, TenantLogin] = field(default_factory=lambda: {t.user: t for t in TENANTS})

    def routing_map(self, serial: int = 1, *, tenants: tuple[TenantLogin, ...] | None = None,
                    clusters: dict[str, ClusterRoute] | None = None) -> RoutingMap:
        cluster_routes = clusters or {
            name: ClusterRoute(server.host, server.port) for name, server in self.servers.items()
        }
        routes = {
            t.user: TenantRoute(t.user, t.cluster, dict(t.databases), t.allowed_cidrs, t.max_connections)
            for t in (tenants if tenants is not None else TENANTS)
        }
        return seal(RoutingMap(serial, "2026-11-23T09:30:00Z", cluster_routes, routes))

    def admin(self, cluster: str, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return admin_connect(self.servers[cluster], ADMIN_PASSWORD, dbname)

    def backend_sessions(self, cluster: str) -> int:
        """Client sessions on the server other than the one asking."""
        with self.admin(cluster) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()").fetchone()
        assert row is not None
        return int(str(row[0]))


def create_tenants(server: PgServer, cluster: str) -> None:
    with admin_connect(server, ADMIN_PASSWORD) as connection:
        for tenant in TENANTS:
            if tenant.cluster != cluster:
                continue
            encryption = "md5" if tenant.user == "carol" else "scram-sha-256"
            connection.execute(f"SET password_encryption = '{encryption}'")
            connection.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    psycopg.sql.Identifier(tenant.user), psycopg.sql.Literal(tenant.password)))
            for physical in tenant.databases.values():
                connection.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    psycopg.sql.Identifier(physical), psycopg.sql.Identifier(tenant.user)))
        hba = server.data_dir / "pg_hba.conf"
        text = hba.read_text()
        hba.write_text("".join(HBA_OVERRIDES) + text)
        connection.execute("SELECT pg_reload_conf()")


# --- the proxy process ------------------------------------------------------------------------------

_LISTENING = re.compile(r"tenantctl proxy listening on [^:]+:(\d+)(?:, admin http://[^:]+:(\d+))?")


class ProxyProcess:
    def __init__(self, routes: str, workdir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.log_path = workdir / f"proxy-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        command = [sys.executable, "-m", "tenantctl.cli.main", "proxy", "--routes", routes,
                   "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--watch-interval", "0.2", *extra]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})})
        self.port, self.admin_port = self._wait_listening()

    def _wait_listening(self, timeout: float = 60.0) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                return int(match.group(1)), int(match.group(2))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"proxy did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def metric(self, name_and_labels: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(name_and_labels + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def wait_metric(self, name_and_labels: str, predicate: object, timeout: float = 15.0) -> float:
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        value = self.metric(name_and_labels)
        while not predicate(value):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name_and_labels} = {value} after {timeout}s\n{self.log()[-3000:]}")
            time.sleep(0.05)
            value = self.metric(name_and_labels)
        return value

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode

    def dsn(self, user: str, database: str, password: str | None = None, **extra: object) -> str:
        params: dict[str, object] = {"host": "127.0.0.1", "port": self.port, "user": user, "dbname": database,
                                     "connect_timeout": 15, "sslmode": "disable", **extra}
        if password is not None:
            params["password"] = password
        return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]


StartProxy = Callable[..., ProxyProcess]


# --- raw protocol helpers ----------------------------------------------------------------------------

def raw_exchange(port: int, payload: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``payload`` to the proxy, return everything it answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    return b"".join(chunks)


def scram_exchange(port: int, user: str, database: str) -> tuple[list[bytes], dict[str, str], bytes]:
    """A SCRAM login with a wrong proof, by hand: (message types received, final error fields, salt)."""
    def read_message(sock: socket.socket) -> tuple[bytes, bytes]:
        header = b""
        while len(header) < 5:
            chunk = sock.recv(5 - len(header))
            assert chunk, "closed"
            header += chunk
        (length,) = struct.unpack("!i", header[1:5])
        body = b""
        while len(body) < length - 4:
            chunk = sock.recv(length - 4 - len(body))
            assert chunk, "closed"
            body += chunk
        return header[:1], body

    kinds: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(wire.encode_startup_message(
            wire.StartupMessage(wire.PROTOCOL_3_0, (("user", user), ("database", database)))))
        kind, body = read_message(sock)
        kinds.append(kind)
        if kind == b"E":
            return kinds, wire.decode_error_fields(body), b""
        assert body[4:] == b"SCRAM-SHA-256\x00\x00", body
        client_first = b"n,,n=,r=abcdefghijklmnopqrstuvwx"
        initial = b"SCRAM-SHA-256\x00" + struct.pack("!i", len(client_first)) + client_first
        sock.sendall(b"p" + struct.pack("!i", 4 + len(initial)) + initial)
        kind, body = read_message(sock)
        kinds.append(kind)
        server_first = dict(part.split(b"=", 1) for part in body[4:].split(b","))
        assert server_first[b"r"].startswith(b"abcdefghijklmnopqrstuvwx") and server_first[b"i"] == b"4096"
        final = b"c=biws,r=" + server_first[b"r"] + b",p=" + base64.b64encode(b"\x00" * 32)
        sock.sendall(b"p" + struct.pack("!i", 4 + len(final)) + final)
        kind, body = read_message(sock)
        kinds.append(kind)
        return kinds, wire.decode_error_fields(body), server_first[b"s"]


def raw_startup_error(port: int, user: str, database: str) -> dict[str, str]:
    packet = wire.encode_startup_message(wire.StartupMessage(wire.PROTOCOL_3_0,
                                                             (("user", user), ("database", database))))
    answer = raw_exchange(port, packet)
    assert answer[:1] == b"E", answer[:100]
    (length,) = struct.unpack("!i", answer[1:5])
    return wire.decode_error_fields(answer[5:1 + length])


def cluster_tls(mode: str, ca_file: str | None = None) -> ClusterTls:
    return ClusterTls(mode, ca_file)
