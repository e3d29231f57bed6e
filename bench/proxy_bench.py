#!/usr/bin/env python3
"""Benchmark the tenant-routing proxy against direct connections and PgBouncer (session pooling).

Setup: two local PostgreSQL servers (tenantctl.local.pgserver, fsync off), four tenants spread over
both (SCRAM passwords, `pgbench -i -s 1` each), one routing map; the same map rendered into
PgBouncer's [databases] section (database = the physical name). Direct, PgBouncer and the proxy
runs are interleaved (order rotated per repetition); medians are reported.

Measures:
  1. `pgbench -S` TPS at 1, 8 and 32 clients (8/32: two pgbench processes, one tenant per cluster)
  2. CPU time per transaction of the proxy process vs the PgBouncer process (/proc/<pid>/stat)
  3. p50 latency at 1 client from `pgbench -l` logs (added latency over direct)
  4. connection per transaction (`pgbench -C`): connections per second
  5. a 100,000-tenant map: load time; reload time at rest and during a multi-tenant pgbench run that
     saturates the machine (15 reloads; failed transactions); resident memory growth

Run: .venv/bin/python bench/proxy_bench.py [--duration 5] [--reps 3] [--json results.json]
A/B a proxy option in the same run (its proxy joins the interleaved -S and -C runs):
     .venv/bin/python bench/proxy_bench.py --variant 'nice0=--relay-nice 0'
Requires pgbouncer (apt-get install -y pgbouncer), pgbench, PostgreSQL server binaries.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from tenantctl.fsutil import atomic_write_bytes
from tenantctl.local.pgserver import PgServer, admin_connect, free_port, start_server, stop_server
from tenantctl.routing.document import ClusterRoute, RoutingMap, TenantRoute, seal, serialize
from tenantctl.routing.store import write_map

ADMIN_PASSWORD = "bench-admin-pw"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Tenant:
    user: str
    cluster: str
    password: str

    @property
    def database(self) -> str:
        return f"{self.user}_app"


TENANTS = (Tenant("t1", "c1", "pw-t1"), Tenant("t2", "c2", "pw-t2"), Tenant("t3", "c1", "pw-t3"),
           Tenant("t4", "c2", "pw-t4"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the three targets -------------------------------------------------------------------------------

@dataclass
class Target:
    name: str
    port: int
    pid: int | None  # the process whose CPU is measured (None: direct)
    physical_names: bool  # PgBouncer and direct use the physical database name

    def database(self, tenant: Tenant) -> str:
        return tenant.database if self.physical_names else "app"


def start_proxy(routes: Path, workdir: Path, extra_args: list[str] | None = None,
                ) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    log_path = workdir / f"proxy-{time.monotonic_ns()}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantctl.cli.main", "proxy", "--routes", str(routes), "--listen", "127.0.0.1:0",
         "--admin", "127.0.0.1:0", "--watch-interval", "0.2", "--log-level", "info",
         *os.environ.get("BENCH_PROXY_ARGS", "").split(), *(extra_args or [])],
        # Its own session, like the daemonised PgBouncer (`pgbouncer -d` calls setsid) and every
        # PostgreSQL backend: with kernel.sched_autogroup_enabled=1 (the default on this machine) CPU is
        # shared per session first, and a proxy left in the bench's session would share one slice with
        # the pgbench clients while PgBouncer gets its own. A proxy run as a service has its own too.
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pattern = re.compile(r"listening on [^:]+:(\d+), admin http://[^:]+:(\d+)")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = pattern.search(log_path.read_text(errors="replace"))
        if match:
            return process, int(match.group(1)), int(match.group(2)), log_path
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"proxy did not start:\n{log_path.read_text()}")


def start_pgbouncer(routing_map: RoutingMap, workdir: Path) -> tuple[int, Path]:
    directory = workdir / "pgbouncer"
    directory.mkdir()
    port = free_port()
    databases = "\n".join(
        f"{physical} = host={routing_map.clusters[route.cluster].host} "
        f"port={routing_map.clusters[route.cluster].port} dbname={physical}"
        for route in routing_map.tenants.values() for physical in route.databases.values())
    (directory / "pgbouncer.ini").write_text(f"""[databases]
{databases}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {directory}/userlist.txt
pool_mode = session
max_client_conn = 2000
default_pool_size = 100
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
log_connections = 0
log_disconnections = 0
""")
    (directory / "userlist.txt").write_text("".join(f'"{t.user}" "{t.password}"\n' for t in TENANTS))
    shutil.chown(directory, "postgres")
    for child in directory.iterdir():
        shutil.chown(child, "postgres")
    subprocess.run(["runuser", "-u", "postgres", "--", "pgbouncer", "-d", str(directory / "pgbouncer.ini")],
                   check=True)
    deadline = time.monotonic() + 30
    while not (directory / "pgbouncer.pid").exists():
        if time.monotonic() > deadline:
            raise SystemExit("pgbouncer did not start")
        time.sleep(0.05)
    time.sleep(0.2)
    return port, directory


# --- pgbench -----------------------------------------------------------------------------------------

@dataclass
class RunResult:
    tps: float
    transactions: int
    failed: int
    cpu_seconds: float | None
    exit_codes: list[int]
    latencies_us: list[int]


def pgbench(target: Target, tenants: list[Tenant], clients: int, duration: float, *, connect_each: bool = False,
            log_dir: Path | None = None) -> RunResult:
    per = max(1, clients // len(tenants))
    processes = []
    for tenant in tenants:
        command = ["pgbench", "-n", "-S", "-M", "simple", "-c", str(per), "-j", "1", "-T", str(int(duration)),
                   "-h", "127.0.0.1", "-p", str(target.port), "-U", tenant.user]
        if connect_each:
            command.append("-C")
        if log_dir is not None:
            command += ["-l", f"--log-prefix={log_dir}/{target.name}-{tenant.user}"]
        command.append(target.database(tenant))
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env={**os.environ, "PGPASSWORD": tenant.password}))
    before = cpu_seconds(target.pid) if target.pid else None
    outputs = [p.communicate(timeout=duration + 120) for p in processes]
    after = cpu_seconds(target.pid) if target.pid else None
    tps = 0.0
    transactions = failed = 0
    for stdout, stderr in outputs:
        match = re.search(r"tps = ([\d.]+) \((?:without|excluding)", stdout) or re.search(r"tps = ([\d.]+)", stdout)
        if not match:
            raise SystemExit(f"pgbench failed on {target.name}:\n{stdout}\n{stderr}")
        tps += float(match.group(1))
        done = re.search(r"number of transactions actually processed: (\d+)", stdout)
        transactions += int(done.group(1)) if done else 0
        failures = re.search(r"number of failed transactions: (\d+)", stdout)
        failed += int(failures.group(1)) if failures else 0
    latencies: list[int] = []
    if log_dir is not None:
        for path in log_dir.glob(f"{target.name}-*"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    latencies.append(int(parts[2]))
            path.unlink()
    cpu = (after - before) if before is not None and after is not None else None
    return RunResult(tps, transactions, failed, cpu, [p.returncode for p in processes], latencies)


def tenants_for(clients: int) -> list[Tenant]:
    return [TENANTS[0]] if clients == 1 else [TENANTS[0], TENANTS[1]]


# --- main ----------------------------------------------------------------------------------------------

def big_map(base: RoutingMap, size: int, serial: int) -> RoutingMap:
    tenants = dict(base.tenants)
    cluster_names = list(base.clusters)
    for i in range(size):
        user = f"tenant{i:06d}"
        tenants[user] = TenantRoute(user, cluster_names[i % len(cluster_names)],
                                    {"app": f"{user}_app", "reports": f"{user}_reports"},
                                    (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32",),
                                    100 + serial % 7)  # content changes with the serial
    return seal(RoutingMap(serial, base.generated_at, base.clusters, tenants))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per pgbench run")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--big-tenants", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--with-asyncio", action="store_true",
                        help="also measure the proxy with its asyncio relay (--relay python) in the throughput runs;"
                             " short for --variant 'asyncio-relay=--relay python'")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                        help="also measure a second proxy started with these extra arguments, in the same"
                             " interleaved throughput runs (a same-run A/B), e.g. --variant 'nice0=--relay-nice 0'")
    args = parser.parse_args()
    command_line = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    if shutil.which("pgbouncer") is None:
        raise SystemExit("pgbouncer not found: apt-get install -y pgbouncer")
    workdir = Path(tempfile.mkdtemp(prefix="tenantctl-bench-", dir="/tmp"))
    os.chmod(workdir, 0o755)
    servers: dict[str, PgServer] = {}
    proxy_process: subprocess.Popen[bytes] | None = None
    variants = dict(v.split("=", 1) for v in args.variant if "=" in v)
    if len(variants) != len(args.variant):
        raise SystemExit("--variant: expected NAME=ARGS")
    if args.with_asyncio:
        variants["asyncio-relay"] = "--relay python"
    variant_proxies: dict[str, subprocess.Popen[bytes]] = {}
    bouncer_dir: Path | None = None
    results: dict[str, object] = {"command": command_line}
    try:
        print(f"setting up in {workdir} ...", flush=True)
        for name in ("c1", "c2"):
            servers[name] = start_server(workdir / name, name=name, admin_password=ADMIN_PASSWORD, unsafe_fast=True,
                                         max_connections=250)
            with admin_connect(servers[name], ADMIN_PASSWORD) as connection:
                for tenant in TENANTS:
                    if tenant.cluster == name:
                        connection.execute(f"CREATE ROLE {tenant.user} LOGIN PASSWORD '{tenant.password}'")
                        connection.execute(f"CREATE DATABASE {tenant.database} OWNER {tenant.user}")
            for tenant in TENANTS:
                if tenant.cluster == name:
                    subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", servers[name].host, "-p",
                                    str(servers[name].port), "-U", tenant.user, tenant.database],
                                   check=True, capture_output=True, env={**os.environ, "PGPASSWORD": tenant.password})
        routing_map = seal(RoutingMap(
            1, "2026-11-23T09:30:00Z", {n: ClusterRoute(s.host, s.port) for n, s in servers.items()},
            {t.user: TenantRoute(t.user, t.cluster, {"app": t.database}, ("127.0.0.0/8",), 1000) for t in TENANTS}))
        routes = workdir / "routes.json"
        write_map(routes, routing_map)
        proxy_process, proxy_port, admin_port, proxy_log = start_proxy(routes, workdir)
        bouncer_port, bouncer_dir = start_pgbouncer(routing_map, workdir)
        bouncer_pid = int((bouncer_dir / "pgbouncer.pid").read_text().strip())
        targets = {
            "direct": None,
            "pgbouncer": Target("pgbouncer", bouncer_port, bouncer_pid, True),
            "proxy": Target("proxy", proxy_port, proxy_process.pid, False),
        }
        for variant, variant_args in variants.items():
            variant_process, variant_port, _, _ = start_proxy(routes, workdir, shlex.split(variant_args))
            variant_proxies[variant] = variant_process
            targets[variant] = Target(variant, variant_port, variant_process.pid, False)

        def direct_for(tenant_list: list[Tenant]) -> list[tuple[Target, list[Tenant]]]:
            # Direct: each tenant's pgbench goes to its own server.
            return [(Target("direct", servers[t.cluster].port, None, True), [t]) for t in tenant_list]

        def run(name: str, clients: int, **kwargs: object) -> RunResult:
            tenant_list = tenants_for(clients)
            if name != "direct":
                target = targets[name]
                assert target is not None
                return pgbench(target, tenant_list, clients, args.duration, **kwargs)  # type: ignore[arg-type]
            # direct: run the per-server pgbench processes concurrently
            parts = direct_for(tenant_list)
            import concurrent.futures

            with concurrent.futures.ThreadPoolExecutor(len(parts)) as pool:
                futures = [pool.submit(pgbench, target, tl, max(1, clients // len(parts)) * len(tl),
                                       args.duration, **kwargs) for target, tl in parts]  # type: ignore[arg-type]
                done = [f.result() for f in futures]
            return RunResult(sum(d.tps for d in done), sum(d.transactions for d in done), sum(d.failed for d in done),
                             None, [c for d in done for c in d.exit_codes], [x for d in done for x in d.latencies_us])

        names = ["direct", "pgbouncer", "proxy"]
        # warm-up
        for name in names:
            run(name, 8)

        contestants = names + list(variants)
        for variant in variants:
            run(variant, 8)
        throughput: dict[str, dict[int, list[RunResult]]] = {n: {} for n in contestants}
        for clients in [int(c) for c in args.clients.split(",")]:
            for rep in range(args.reps):
                order = contestants[rep % len(contestants):] + contestants[:rep % len(contestants)]
                for name in order:
                    result = run(name, clients)
                    throughput[name].setdefault(clients, []).append(result)
                    print(f"  -S c={clients:>2} rep {rep + 1} {name:<13} tps {result.tps:>9.0f}", flush=True)

        latency: dict[str, list[int]] = {n: [] for n in names}
        log_dir = workdir / "latency"
        log_dir.mkdir()
        for rep in range(args.reps):
            for name in names[rep % 3:] + names[:rep % 3]:
                latency[name] += run(name, 1, log_dir=log_dir).latencies_us

        connect: dict[str, list[RunResult]] = {n: [] for n in contestants}
        for rep in range(args.reps):
            for name in contestants[rep % len(contestants):] + contestants[:rep % len(contestants)]:
                result = run(name, 8, connect_each=True)
                connect[name].append(result)
                print(f"  -C c= 8 rep {rep + 1} {name:<13} conn/s {result.tps:>8.0f}", flush=True)
        # The variants would reload the big maps below too and take CPU from the proxy measured there.
        for variant_process in variant_proxies.values():
            variant_process.terminate()
            variant_process.wait(timeout=60)

        # ---- report ----
        def median_tps(name: str, clients: int) -> float:
            return statistics.median(r.tps for r in throughput[name][clients])

        def cpu_per_tx_us(name: str, clients: int) -> float:
            runs = throughput[name][clients]
            return statistics.median((r.cpu_seconds or 0) / max(r.transactions, 1) * 1e6 for r in runs)

        print()
        print(f"command: {command_line}")
        print(f"pgbench -S -M simple, {args.duration:.0f}s per run, {args.reps} reps interleaved, medians")
        print(f"{'clients':>7} | {'direct':>9} | {'pgbouncer':>9} | {'proxy':>9} | {'proxy/pgb':>9} | "
              f"{'proxy/direct':>12} | {'cpu us/tx proxy':>15} | {'cpu us/tx pgb':>13} | {'cpu ratio':>9}")
        table: list[dict[str, Any]] = []
        for clients in sorted(throughput["proxy"]):
            d, b, p = (median_tps(n, clients) for n in names)
            cp, cb = cpu_per_tx_us("proxy", clients), cpu_per_tx_us("pgbouncer", clients)
            table.append({"clients": clients, "direct_tps": d, "pgbouncer_tps": b, "proxy_tps": p,
                          "proxy_vs_pgbouncer": p / b, "proxy_vs_direct": p / d,
                          "proxy_cpu_us_per_tx": cp, "pgbouncer_cpu_us_per_tx": cb, "cpu_ratio": cp / cb})
            print(f"{clients:>7} | {d:>9.0f} | {b:>9.0f} | {p:>9.0f} | {p / b:>9.2f} | {p / d:>12.2f} | "
                  f"{cp:>15.1f} | {cb:>13.1f} | {cp / cb:>9.2f}")
            for variant, variant_args in variants.items():
                a, ca = median_tps(variant, clients), cpu_per_tx_us(variant, clients)
                table[-1].setdefault("variants", {})[variant] = {
                    "args": variant_args, "tps": a, "vs_pgbouncer": a / b, "vs_proxy": a / p, "cpu_us_per_tx": ca}
                print(f"{'':>7}   {variant} ({variant_args}): tps {a:.0f}, {a / b:.2f} x pgbouncer, "
                      f"{a / p:.2f} x proxy, cpu {ca:.1f} us/tx ({ca / cb:.2f} x pgbouncer)")
        results["throughput"] = table
        p50 = {n: statistics.median(latency[n]) for n in names}
        print()
        print("latency at 1 client (pgbench -l), p50 us: " + ", ".join(f"{n} {p50[n]:.0f}" for n in names))
        print(f"added p50 over direct: proxy {p50['proxy'] - p50['direct']:.0f} us, "
              f"pgbouncer {p50['pgbouncer'] - p50['direct']:.0f} us")
        results["latency_p50_us"] = p50
        conn = {n: statistics.median(r.tps for r in connect[n]) for n in contestants}
        print()
        print("connection per transaction (pgbench -S -C, 8 clients), connections/s: "
              + ", ".join(f"{n} {conn[n]:.0f}" for n in contestants))
        print(f"proxy/direct {conn['proxy'] / conn['direct']:.2f}, "
              f"proxy/pgbouncer {conn['proxy'] / conn['pgbouncer']:.2f}"
              " (PgBouncer reuses server connections in session mode; the proxy opens one per client)")
        results["connect_per_second"] = conn

        # ---- 100k-tenant map ----
        print()
        rss_before = rss_mb(proxy_process.pid)
        big = big_map(routing_map, args.big_tenants, 2)
        write_map(routes, big)
        admin = f"http://127.0.0.1:{admin_port}/metrics"

        def serial_now() -> int:
            with urllib.request.urlopen(admin, timeout=30) as response:
                text = response.read().decode()
            return int(re.search(r"^tenantctl_proxy_routing_map_serial (\d+)", text, re.M).group(1))  # type: ignore[union-attr]

        def wait_serial(serial: int) -> None:
            deadline = time.monotonic() + 60
            while serial_now() != serial:
                if time.monotonic() > deadline:
                    raise SystemExit(f"proxy did not load serial {serial}\n{proxy_log.read_text()[-2000:]}")
                time.sleep(0.05)

        wait_serial(2)
        rss_loaded = rss_mb(proxy_process.pid)
        # A fresh proxy loading the big map from scratch (initial load time).
        fresh, _, _, fresh_log = start_proxy(routes, workdir)
        fresh.send_signal(signal.SIGTERM)
        fresh.wait(timeout=60)
        initial_ms = float(re.search(r"loaded in (\d+) ms", fresh_log.read_text()).group(1))  # type: ignore[union-attr]

        # 15 reloads during a multi-tenant pgbench run on all four tenants. The maps are serialised
        # before pgbench starts (building one costs this process ~2 s of CPU, which would compete
        # with the proxy), a new one is written every RELOAD_EVERY seconds, and pgbench runs longer
        # than the whole sequence: every reload is checked to have happened while pgbench ran.
        new_maps = [serialize(big_map(routing_map, args.big_tenants, serial)) for serial in range(3, 23)]
        idle_maps = new_maps[15:]
        new_maps = new_maps[:15]
        reload_every = 2.0
        reload_seconds = int(reload_every * len(new_maps) + 10)
        processes = []
        for tenant in TENANTS:
            processes.append(subprocess.Popen(
                ["pgbench", "-n", "-S", "-c", "4", "-j", "1", "-T", str(reload_seconds), "-h", "127.0.0.1", "-p",
                 str(proxy_port), "-U", tenant.user, "app"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env={**os.environ, "PGPASSWORD": tenant.password}))
        time.sleep(2)
        reloads_under_load = 0
        for serial, data in enumerate(new_maps, start=3):
            tick = time.monotonic()
            atomic_write_bytes(routes, data)
            wait_serial(serial)
            reloads_under_load += all(p.poll() is None for p in processes)
            time.sleep(max(0.0, reload_every - (time.monotonic() - tick)))
        del new_maps
        outputs = [p.communicate(timeout=reload_seconds + 120) for p in processes]
        # Then 5 reloads on a machine at rest: the cost of a reload itself.
        for serial, data in enumerate(idle_maps, start=18):
            atomic_write_bytes(routes, data)
            wait_serial(serial)
            time.sleep(0.5)
        del idle_maps
        failed = 0
        processed = 0
        for stdout, _ in outputs:
            match = re.search(r"number of failed transactions: (\d+)", stdout)
            failed += int(match.group(1)) if match else 0
            done = re.search(r"number of transactions actually processed: (\d+)", stdout)
            processed += int(done.group(1)) if done else 0
        exit_codes = [p.returncode for p in processes]
        reloads = re.findall(r"tenants, (\d+) ms; (\d+) ms CPU", proxy_log.read_text())
        reload_ms = [float(wall) for wall, _ in reloads]
        reload_cpu_ms = [float(cpu) for _, cpu in reloads]
        # reloads[0]: serial 2 (before pgbench), [1:16]: under load, [16:]: at rest
        loaded_ms, loaded_cpu = reload_ms[1:16], reload_cpu_ms[1:16]
        rest_ms, rest_cpu = reload_ms[:1] + reload_ms[16:], reload_cpu_ms[:1] + reload_cpu_ms[16:]
        rss_after = rss_mb(proxy_process.pid)
        print(f"{args.big_tenants} tenant map ({routes.stat().st_size / 1e6:.1f} MB): initial load {initial_ms:.0f} ms")
        print(f"  reloads at rest ({len(rest_ms)}): median {statistics.median(rest_ms):.0f} ms, "
              f"max {max(rest_ms):.0f} ms (CPU of the reading thread: median {statistics.median(rest_cpu):.0f} ms)")
        print(f"  reloads under the pgbench load ({len(loaded_ms)}): median {statistics.median(loaded_ms):.0f} ms, "
              f"max {max(loaded_ms):.0f} ms (CPU of the reading thread: median {statistics.median(loaded_cpu):.0f} ms, "
              f"max {max(loaded_cpu):.0f} ms; the rest of the wall time is waiting for a CPU)")
        print("  reload wall ms, in order: " + " ".join(f"{ms:.0f}" for ms in reload_ms))
        print(f"proxy RSS: {rss_before:.0f} MB with 4 tenants, {rss_loaded:.0f} MB with the big map "
              f"(+{rss_loaded - rss_before:.0f} MB), {rss_after:.0f} MB after 20 more reloads "
              f"(+{rss_after - rss_before:.0f} MB total)")
        print(f"15 reloads ({reloads_under_load} of them while all 4 pgbench runs were still going) during "
              f"pgbench on 4 tenants x 4 clients: {processed} transactions, {failed} failed, "
              f"pgbench exit codes {exit_codes}")
        results["big_map"] = {"tenants": args.big_tenants, "initial_load_ms": initial_ms, "reload_ms": reload_ms,
                              "reload_cpu_ms": reload_cpu_ms,
                              "rss_mb": [rss_before, rss_loaded, rss_after], "failed": failed,
                              "processed": processed, "exit_codes": exit_codes,
                              "reloads_under_load": reloads_under_load}
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    finally:
        for variant_process in variant_proxies.values():
            if variant_process.poll() is None:
                variant_process.kill()
        if proxy_process is not None and proxy_process.poll() is None:
            proxy_process.send_signal(signal.SIGTERM)
            try:
                proxy_process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proxy_process.kill()
        if bouncer_dir is not None and (bouncer_dir / "pgbouncer.pid").exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int((bouncer_dir / "pgbouncer.pid").read_text().strip()), signal.SIGTERM)
        for name in servers:
            try:
                stop_server(workdir / name)
            except Exception as error:
                print(f"could not stop {name}: {error}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
