#!/usr/bin/env python3
"""Benchmark: `tenantctl move` of a live tenant, against `pg_dump | pg_restore` of the same database.

Two real local clusters (c1, c2), the real proxy with its control socket, a writer committing one row
at a time through the proxy during every move. Reports:

- the move of a tenant holding --size-mb of data: total time, initial-copy time and throughput, and the
  cut-over pause; the copy throughput as a fraction of `pg_dump -Fc | pg_restore` of the same database
  between the same servers, measured in the same run;
- the cut-over pause (p50 / max) over --moves moves of a small tenant back and forth under load, with
  the worst gap between two acknowledged commits of the writer;
- a neighbour tenant's pgbench -S p99 latency on the source cluster: with the small tenant writing but
  not moving (15 s), and during its moves.

    .venv/bin/python bench/move_bench.py --size-mb 1024 --moves 10
    .venv/bin/python bench/move_bench.py --size-mb 100 --moves 4      # quicker

Servers run with fsync off (unsafe_fast), as the other Postgres benchmarks here: on this shared 2-core
machine fsync timing is noise from other workloads.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from tenantctl.local.pgserver import admin_connect, local_admin_password, up_local_clusters
from tenantctl.model import load_model
from tenantctl.workflow.clusters import cluster_resolver
from tenantctl.workflow.move import MoveOptions, move

CLIENTS = """
settings = { allow_private_source_ips = true }
clusters = { c1 = { min_acu = 0.5, max_acu = 4 }, c2 = { min_acu = 0.5, max_acu = 4 } }
clients = [
  { name = "big", databases = { app = true }, allowed_ips = ["127.0.0.1/32"], rds_iam_auth = false,
    cluster = "c1" },
  { name = "small", databases = { app = true }, allowed_ips = ["127.0.0.1/32"], rds_iam_auth = false,
    cluster = "c1" },
  { name = "neighbour", databases = { app = true }, allowed_ips = ["127.0.0.1/32"], rds_iam_auth = false,
    cluster = "c1" },
]
"""
LISTENING = re.compile(r"listening on [^:]+:(\d+)")


class Writer(threading.Thread):
    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.acked, self.stop = dsn, [], threading.Event()

    def run(self) -> None:
        connection = None
        while not self.stop.is_set():
            try:
                connection = connection or psycopg.connect(self.dsn, autocommit=True, connect_timeout=60)
                connection.execute("INSERT INTO ticks DEFAULT VALUES")
                self.acked.append(time.monotonic())
            except psycopg.Error:
                connection = None
            time.sleep(0.002)

    def worst_gap(self, start: float, end: float) -> float:
        times = [t for t in self.acked if start <= t <= end]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


class Neighbour(threading.Thread):
    """pgbench -S (2 clients) for another tenant on the source cluster, in 5-second rounds with a
    per-transaction log, until stopped: its latencies while nothing moves vs while a tenant moves."""

    def __init__(self, dsn: str, logs: Path) -> None:
        super().__init__(daemon=True)
        self.dsn, self.logs, self.stop = dsn, logs, threading.Event()
        self.logs.mkdir(parents=True, exist_ok=True)

    def run(self) -> None:
        round_number = 0
        while not self.stop.is_set():
            round_number += 1
            subprocess.run(["pgbench", "-n", "-c", "2", "-T", "5", "-S", "-l",
                            f"--log-prefix={self.logs}/r{round_number}", self.dsn], capture_output=True, check=True)

    def latencies_ms(self) -> list[float]:
        values = []
        for log in self.logs.glob("r*"):
            for line in log.read_text().splitlines():
                values.append(int(line.split()[2]) / 1000)
        return sorted(values)


def p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0.0


def cli(root: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tenantctl.cli.main", *args], cwd=root, capture_output=True,
                          text=True, check=True)
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--verify", default="full", choices=("full", "counts"), help="the big move's --verify")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tenantctl-movebench-", dir="/tmp"))
    root.chmod(0o755)
    clients = root / "clients.tfvars"
    clients.write_text(CLIENTS)
    state_dir = root / ".tenantctl"
    proxy: subprocess.Popen[str] | None = None
    report: dict[str, Any] = {"size_mb": args.size_mb, "verify": args.verify}
    try:
        model = load_model(clients)
        up_local_clusters(model, state_dir, unsafe_fast=True)
        # the production path: the cluster stack first (endpoints, admin secrets), then the tenants
        cli(root, "apply", "--auto-approve", "--then-deferred", "--parallel", "1")
        resolver = cluster_resolver(model, state_dir, start_local_servers=False)
        socket_path = root / "proxy.sock"
        log = (root / "proxy.log").open("w")
        proxy = subprocess.Popen([sys.executable, "-m", "tenantctl.cli.main", "proxy", "--routes",
                                  ".tenantctl/routes.json", "--listen", "127.0.0.1:0", "--watch-interval", "0.2",
                                  "--control-socket", str(socket_path)], cwd=root, stdout=log,
                                 stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while not (found := LISTENING.search((root / "proxy.log").read_text())):
            assert time.monotonic() < deadline and proxy.poll() is None, (root / "proxy.log").read_text()
            time.sleep(0.1)
        port = found.group(1)
        dsn = {t: cli(root, "credentials", t, "--via", f"127.0.0.1:{port}", "--database", "app", "--reveal").strip()
               for t in ("big", "small", "neighbour")}
        subprocess.run(["pgbench", "-i", "-s", "1", "-q", dsn["neighbour"]], capture_output=True, check=True)
        rows = args.size_mb * 1024 * 1024 // 220  # ~220 bytes per row on disk
        with psycopg.connect(dsn["big"], autocommit=True) as conn:
            conn.execute("CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
            conn.execute("CREATE TABLE payload (id bigserial PRIMARY KEY, body text, n int)")
            started = time.monotonic()
            for chunk in range(0, rows, 500_000):
                conn.execute("INSERT INTO payload (body, n) SELECT repeat(md5(g::text), 5), g FROM "
                             "generate_series(%s, %s) g", (chunk, min(rows, chunk + 500_000) - 1))
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert size is not None
        report["database_bytes"] = int(size[0])
        report["load_seconds"] = round(time.monotonic() - started, 1)
        with psycopg.connect(dsn["small"], autocommit=True) as conn:
            conn.execute("CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
            conn.execute("CREATE TABLE payload AS SELECT g AS id, md5(g::text) AS body "
                         "FROM generate_series(1, 20000) g")

        # --- the peer: pg_dump -Fc | pg_restore of the same database between the same servers -------
        c1, c2 = resolver.resolve("c1"), resolver.resolve("c2")
        with admin_connect_to(state_dir, "c2") as conn:
            conn.execute("CREATE DATABASE dump_restore_peer")
        started = time.monotonic()  # the same TLS path as the move (libpq_env: host, hostaddr, verify-full)
        dump = subprocess.Popen(["pg_dump", "-Fc", "-d", "big_app"], stdout=subprocess.PIPE,
                                env={**os.environ, **c1.libpq_env()})
        subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "-d", "dump_restore_peer"],
                       stdin=dump.stdout, check=True, env={**os.environ, **c2.libpq_env()})
        assert dump.wait() == 0
        report["pg_dump_restore_seconds"] = round(time.monotonic() - started, 2)
        with admin_connect_to(state_dir, "c2") as conn:
            conn.execute("DROP DATABASE dump_restore_peer")

        # --- the big move under load -----------------------------------------------------------------
        options = MoveOptions(timeout=120, proxy_sockets=(socket_path,), verify=args.verify)
        writer = Writer(dsn["big"])
        writer.start()
        started = time.monotonic()
        result = move(root, clients, "big", "c2", options=options)
        ended = time.monotonic()
        time.sleep(1)
        writer.stop.set()
        writer.join()
        ledger = [json.loads(line) for line in (state_dir / "moves.jsonl").read_text().splitlines()]
        copy_seconds = next(e["seconds"] for e in ledger if e["tenant"] == "big" and e["step"] == "initial_copy_done")
        report["big_move"] = {
            "total_seconds": round(ended - started, 2), "initial_copy_seconds": copy_seconds,
            "copy_mb_per_s": round(report["database_bytes"] / 1e6 / copy_seconds, 1),
            "copy_vs_pg_dump_restore": round(report["pg_dump_restore_seconds"] / copy_seconds, 2),
            "pause_seconds": result.pause_seconds, "cutover_timings": result.cutover_timings,
            "worst_commit_gap_seconds": round(writer.worst_gap(started, ended + 1), 3),
        }

        # --- pause p50/max: a small tenant back and forth under load; a neighbour's p99 meanwhile -------
        writer = Writer(dsn["small"])  # the moving tenant's own write load, in both phases
        writer.start()
        quiet = Neighbour(dsn["neighbour"], root / "neighbour-quiet")
        quiet.start()
        time.sleep(15)
        quiet.stop.set()
        quiet.join()
        busy = Neighbour(dsn["neighbour"], root / "neighbour-moving")
        busy.start()
        pauses, gaps = [], []
        for number in range(args.moves):
            target = "c2" if number % 2 == 0 else "c1"
            started = time.monotonic()
            result = move(root, clients, "small", target,
                          options=MoveOptions(timeout=10, proxy_sockets=(socket_path,)))
            time.sleep(0.5)
            pauses.append(result.pause_seconds or 0.0)
            gaps.append(writer.worst_gap(started, time.monotonic()))
        writer.stop.set()
        writer.join()
        busy.stop.set()
        busy.join()
        report["neighbour_p99_ms"] = {"quiet": round(p99(quiet.latencies_ms()), 3),
                                      "during_moves": round(p99(busy.latencies_ms()), 3)}
        report["small_moves"] = {
            "moves": args.moves, "pause_p50_seconds": round(statistics.median(pauses), 3),
            "pause_max_seconds": round(max(pauses), 3),
            "worst_commit_gap_p50_seconds": round(statistics.median(gaps), 3),
            "worst_commit_gap_max_seconds": round(max(gaps), 3),
        }
        print(json.dumps(report, indent=2))
        return 0
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=30)
        subprocess.run([sys.executable, "-m", "tenantctl.cli.main", "local", "down"], cwd=root,
                       capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def admin_connect_to(state_dir: Path, cluster: str) -> psycopg.Connection[Any]:
    from tenantctl.local.pgserver import running_local_server

    return admin_connect(running_local_server(state_dir, cluster), local_admin_password(state_dir, cluster))


if __name__ == "__main__":
    sys.exit(main())
