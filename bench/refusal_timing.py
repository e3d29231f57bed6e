"""Can a client tell a refused tenant from a wrong password by timing? Proxy vs the backend's own answer.

For each kind of login attempt, a SCRAM exchange with a wrong proof is run by hand and timed: from the
startup packet to the server's SASL offer, and to the final error. Kinds, interleaved round by round:

- through the proxy: a real tenant with a wrong password (its backend answers), an unknown tenant, an
  unknown database, a tenant from an address it does not allow (the proxy's mock exchange answers);
- directly to PostgreSQL, for the backend's own spread: an existing role with a wrong password, and a
  role that does not exist (PostgreSQL's own mock exchange).

    .venv/bin/python bench/refusal_timing.py --rounds 200

Prints medians and p90 in milliseconds, and the proxy's largest median gap between kinds next to the
backend's own gap (existing vs missing role).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from proxy_bench import start_proxy  # type: ignore[import-not-found]

from tenantctl.local.pgserver import admin_connect, start_server, stop_server
from tenantctl.proxy import wire
from tenantctl.routing.document import ClusterRoute, RoutingMap, TenantRoute, seal
from tenantctl.routing.store import write_map

PASSWORD = "bench-admin-pw"


def _read(sock: socket.socket) -> tuple[bytes, bytes]:
    header = b""
    while len(header) < 5:
        header += sock.recv(5 - len(header))
    (length,) = struct.unpack("!i", header[1:5])
    body = b""
    while len(body) < length - 4:
        body += sock.recv(length - 4 - len(body))
    return header[:1], body


def attempt(port: int, user: str, database: str) -> tuple[float, float]:
    """(ms to the SASL offer, ms to the final error) of a SCRAM login with a wrong proof."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(wire.encode_startup_message(
            wire.StartupMessage(wire.PROTOCOL_3_0, (("user", user), ("database", database)))))
        kind, _ = _read(sock)
        offered = time.perf_counter()
        assert kind == b"R"
        first = b"n,,n=,r=benchmarknonce0123456789"
        initial = b"SCRAM-SHA-256\x00" + struct.pack("!i", len(first)) + first
        sock.sendall(b"p" + struct.pack("!i", 4 + len(initial)) + initial)
        kind, body = _read(sock)
        server = dict(part.split(b"=", 1) for part in body[4:].split(b","))
        final = b"c=biws,r=" + server[b"r"] + b",p=" + base64.b64encode(b"\x00" * 32)
        sock.sendall(b"p" + struct.pack("!i", 4 + len(final)) + final)
        kind, body = _read(sock)
        assert kind == b"E" and wire.decode_error_fields(body)["C"] == "28P01"
        done = time.perf_counter()
    return (offered - started) * 1000, (done - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tenantctl-refusal-bench-", dir="/tmp"))
    os.chmod(workdir, 0o755)
    proxy = None
    try:
        server = start_server(workdir / "c1", name="c1", admin_password=PASSWORD, unsafe_fast=True)
        with admin_connect(server, PASSWORD) as connection:
            connection.execute("CREATE ROLE alice LOGIN PASSWORD 'alice-pw'")
            connection.execute("CREATE DATABASE alice_app OWNER alice")
            connection.execute("CREATE ROLE faraway LOGIN PASSWORD 'faraway-pw'")
        routes = workdir / "routes.json"
        write_map(routes, seal(RoutingMap(1, "2026-12-03T00:00:00Z", {"c1": ClusterRoute(server.host, server.port)}, {
            "alice": TenantRoute("alice", "c1", {"app": "alice_app"}, ("127.0.0.0/8",), 100),
            "faraway": TenantRoute("faraway", "c1", {"app": "alice_app"}, ("203.0.113.0/24",), 100)})))
        proxy, proxy_port, _, _ = start_proxy(routes, workdir)
        kinds = {
            "proxy: wrong password (real backend)": (proxy_port, "alice", "app"),
            "proxy: unknown tenant (mock)": (proxy_port, "mallory", "app"),
            "proxy: unknown database (mock)": (proxy_port, "alice", "nosuch"),
            "proxy: address not allowed (mock)": (proxy_port, "faraway", "app"),
            "direct: wrong password": (server.port, "alice", "alice_app"),
            "direct: unknown role (PostgreSQL's mock)": (server.port, "mallory", "alice_app"),
        }
        for target in kinds.values():  # warm up (the proxy learns the backends' pace from real logins)
            for _ in range(20):
                attempt(*target)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in kinds}
        for _ in range(args.rounds):
            for name, target in kinds.items():
                samples[name].append(attempt(*target))
        print(f"{'kind':44} {'offer p50':>10} {'offer p90':>10} {'error p50':>10} {'error p90':>10}  (ms)")
        medians: dict[str, tuple[float, float]] = {}
        for name, values in samples.items():
            offers = sorted(v[0] for v in values)
            totals = sorted(v[1] for v in values)
            p90 = int(len(values) * 0.9)
            medians[name] = (statistics.median(offers), statistics.median(totals))
            print(f"{name:44} {medians[name][0]:10.3f} {offers[p90]:10.3f} {medians[name][1]:10.3f} "
                  f"{totals[p90]:10.3f}")
        proxy_totals = [m[1] for n, m in medians.items() if n.startswith("proxy")]
        backend_gap = abs(medians["direct: wrong password"][1] - medians["direct: unknown role (PostgreSQL's mock)"][1])
        proxy_gap = max(proxy_totals) - min(proxy_totals)
        print(f"\nproxy: largest gap between kinds (median, whole exchange): {proxy_gap:.3f} ms")
        print(f"backend: existing vs missing role (median, whole exchange): {backend_gap:.3f} ms")
        print(f"command: {' '.join([sys.executable, *sys.argv])}")
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=30)
        stop_server(workdir / "c1")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
