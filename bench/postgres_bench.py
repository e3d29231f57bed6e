#!/usr/bin/env python3
"""Benchmark: the native Postgres engine on a real local PostgreSQL server.

Measures, for N tenants x D databases on one cluster: the plan from empty, the apply (reconcile from
empty), a no-op plan (and its number of catalog queries, which must not grow with N), and a deep no-op
plan (one connection per database). Half the tenants use passwords (SCRAM verifiers computed in Python,
secrets in a moto Secrets Manager, or in memory with --secrets memory), half IAM auth.
Targets: reconcile 1,000 x 2 from empty <= 90 s; no-op plan with 1,000 tenants <= 2 s.

    .venv/bin/python bench/postgres_bench.py --tenants 1000 --databases 2
    .venv/bin/python bench/postgres_bench.py --tenants 200 --strategy WAL_LOG --safe   # compare
    .venv/bin/python bench/postgres_bench.py --base /dev/shm   # data on tmpfs: the disk out of the picture

The server runs with fsync=off (unsafe_fast) unless --safe: on this shared 2-core machine fsync timing
is noise from the other workloads; say which one you used when quoting figures.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tenantctl.aws.secrets import MemorySecretStore, SecretsManagerStore, SecretStore
from tenantctl.local.pgserver import start_server, stop_server
from tenantctl.model import model_from_text
from tenantctl.model.desired import desired_state
from tenantctl.postgres.applier import ApplyOptions
from tenantctl.postgres.connect import ClusterConnection
from tenantctl.postgres.engine import apply_cluster, plan_cluster


def clients(tenants: int, databases: int) -> str:
    dbs = ", ".join(f"db{i} = true" for i in range(1, databases + 1))
    rows = "".join(
        f'  {{ name = "tenant{i:05d}", databases = {{ {dbs} }}, allowed_ips = ["34.1.{i % 250}.1/32"], '
        f'rds_iam_auth = {"true" if i % 2 else "false"}, cluster = "main" }},\n' for i in range(tenants))
    return 'clusters = { main = {} }\nclients = [\n' + rows + "]\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--databases", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--strategy", default="FILE_COPY", choices=("FILE_COPY", "WAL_LOG"))
    parser.add_argument("--safe", action="store_true", help="keep fsync on")
    parser.add_argument("--secrets", default="moto", choices=("moto", "memory"))
    parser.add_argument("--base", default=tempfile.gettempdir(),
                        help="where the data directory goes (e.g. /dev/shm to take the disk out)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tenantctl-pgbench-", dir=args.base))
    root.chmod(0o755)
    moto_state = root / "state"
    rows: list[tuple[str, float, str]] = []
    try:
        started = time.perf_counter()
        server = start_server(root / "data", name="main", admin_password="bench-admin", unsafe_fast=not args.safe)
        rows.append(("start server (initdb)", time.perf_counter() - started, ""))
        connection = ClusterConnection("main", server.host, server.port, server.admin_user, "bench-admin")
        store: SecretStore
        if args.secrets == "moto":
            from tenantctl.aws.session import AwsTarget, client
            from tenantctl.local.moto import ensure_moto

            moto = ensure_moto(moto_state)
            store = SecretsManagerStore(client(AwsTarget("eu-west-1", moto.url), "secretsmanager"))
        else:
            store = MemorySecretStore()
        started = time.perf_counter()
        desired = desired_state(model_from_text(clients(args.tenants, args.databases)))
        rows.append(("model + desired state", time.perf_counter() - started, ""))

        started = time.perf_counter()
        plan = plan_cluster(desired, "main", connection, secrets=store)
        rows.append(("plan from empty", time.perf_counter() - started,
                     f"{len(plan.actions)} actions, {plan.catalog_queries} catalog queries"))
        started = time.perf_counter()
        apply_cluster(plan, desired, connection, secrets=store,
                      options=ApplyOptions(workers=args.workers, create_database_strategy=args.strategy))
        rows.append(("apply from empty (reconcile)", time.perf_counter() - started,
                     f"{args.tenants * args.databases} databases, {args.strategy}, {args.workers} workers"))
        for label, deep in (("no-op plan", False), ("no-op plan --deep", True)):
            started = time.perf_counter()
            again = plan_cluster(desired, "main", connection, secrets=store, deep=deep)
            rows.append((label, time.perf_counter() - started,
                         f"{len(again.actions)} actions, {again.catalog_queries} catalog queries"))
            assert not again.actions, again.actions[:3]
        report(args, rows)
    finally:
        stop_server(root / "data")
        if args.secrets == "moto":
            from tenantctl.local.moto import stop_moto

            stop_moto(moto_state)
        shutil.rmtree(root, ignore_errors=True)
    return 0


def report(args: argparse.Namespace, rows: list[tuple[str, float, str]]) -> None:
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"server: local PostgreSQL, data under {args.base}, fsync {'on' if args.safe else 'off'}; "
          f"secrets: {args.secrets}")
    print(f"{'step':<32} {'seconds':>9}  notes")
    for label, seconds, note in rows:
        print(f"{label:<32} {seconds:>9.2f}  {note}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
