#!/usr/bin/env python3
"""Benchmark: the one cluster resolver's overhead, and the native engine's no-op plan over TLS vs plaintext.

The local target's production path: three local servers serving TLS from the project's CA for moto-style
endpoint names, admin logins in moto's Secrets Manager (RDS format), the cluster stack's outputs as an
apply records them (written directly: 1,000 tenant stacks through Terraform would measure Terraform).
Measures, in the same run:
- per cluster, resolving (outputs + Secrets Manager read + the certificate check) and a first verify-full
  connection, against a plaintext connection to the same server;
- the no-op plan of 1,000 tenants on 3 clusters through the resolver (TLS verify-full), against the same
  plan over plaintext connections (the previous figure: 0.30 s, 3 catalog queries per cluster).

    .venv/bin/python bench/resolver_bench.py --tenants 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tenantctl.aws.clusters import outputs_resolver
from tenantctl.aws.secrets import SecretsManagerStore
from tenantctl.aws.session import client, target_for
from tenantctl.local.moto import ensure_moto, stop_moto
from tenantctl.local.pgserver import down_local_clusters, up_local_clusters
from tenantctl.model import model_from_text
from tenantctl.model.desired import desired_state
from tenantctl.postgres.connect import connect_admin
from tenantctl.postgres.engine import apply_cluster, plan_cluster
from tenantctl.terraform.manifest import AppliedManifest
from tenantctl.terraform.secret_vars import MASTER_PASSWORD_VAR

CLUSTERS = ("c1", "c2", "c3")


def clients(tenants: int) -> str:
    rows = "".join(
        f'  {{ name = "tenant{i:05d}", databases = {{ db1 = true }}, allowed_ips = ["34.1.{i % 250}.1/32"], '
        f'rds_iam_auth = {"true" if i % 2 else "false"}, cluster = "{CLUSTERS[i % 3]}" }},\n' for i in range(tenants))
    return "clusters = { " + ", ".join(f"{c} = {{}}" for c in CLUSTERS) + " }\nclients = [\n" + rows + "]\n"


def median_of(repeat: int, work: object) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tenantctl-resolverbench-", dir="/tmp"))
    root.chmod(0o755)
    state = root / ".tenantctl"
    os.environ[MASTER_PASSWORD_VAR] = "bench-master-password"
    results: dict[str, object] = {"tenants": args.tenants, "clusters": len(CLUSTERS), "repeat": args.repeat}
    try:
        model = model_from_text(clients(args.tenants))
        servers = up_local_clusters(model, state, unsafe_fast=True)
        target = target_for(model.settings, ensure_moto(state).url)
        sm = client(target, "secretsmanager")
        outputs = {}
        for cluster in CLUSTERS:
            arn = sm.create_secret(Name=f"tenantctl/{cluster}/master", SecretString=json.dumps(
                {"username": servers[cluster].admin_user, "password": "bench-master-password"}))["ARN"]
            outputs[cluster] = {"endpoint": f"{cluster}.cluster-b3nch0000000.eu-west-1.rds.amazonaws.com",
                                "reader_endpoint": f"{cluster}.cluster-ro-b3nch0000000.eu-west-1.rds.amazonaws.com",
                                "port": 5432, "admin_secret_arn": arn}
        AppliedManifest(state / "applied.json").record("cluster", "bench", "bench", outputs)

        # --- per cluster: resolve (outputs + Secrets Manager + certificate check) and the first connection ---
        outputs_resolver(model, state).resolve("c1")  # certificates issued for the endpoint names (once)
        setup_s, resolve_s, tls_connect_s, plain_connect_s = [], [], [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            resolver = outputs_resolver(model, state)  # once per run: outputs, boto3 client, moto check
            setup_s.append(time.perf_counter() - started)
            for cluster in CLUSTERS:
                started = time.perf_counter()
                connection = resolver.resolve(cluster)
                resolve_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                with connect_admin(connection) as conn:
                    conn.execute("SELECT 1")
                tls_connect_s.append(time.perf_counter() - started)
                plain = replace(connection, host="127.0.0.1", connect_address=None, sslmode="disable",
                                sslrootcert=None)
                started = time.perf_counter()
                with connect_admin(plain) as conn:
                    conn.execute("SELECT 1")
                plain_connect_s.append(time.perf_counter() - started)
        results["resolver_setup_ms_per_run_median"] = round(statistics.median(setup_s) * 1000, 1)
        results["resolve_ms_per_cluster_median"] = round(statistics.median(resolve_s) * 1000, 1)
        results["tls_connect_ms_median"] = round(statistics.median(tls_connect_s) * 1000, 1)
        results["plain_connect_ms_median"] = round(statistics.median(plain_connect_s) * 1000, 1)

        # --- reconcile once, then the no-op plan over TLS (through the resolver) and over plaintext ---
        desired = desired_state(model)
        secrets = SecretsManagerStore(sm)
        resolver = outputs_resolver(model, state)
        started = time.perf_counter()
        for cluster in CLUSTERS:
            plan = plan_cluster(desired, cluster, resolver.resolve(cluster), secrets=secrets)
            apply_cluster(plan, desired, resolver.resolve(cluster), secrets=secrets)
        results["reconcile_from_empty_s"] = round(time.perf_counter() - started, 2)

        def noop_plan(tls: bool) -> None:
            fresh = outputs_resolver(model, state)  # what a `tenantctl plan` run does: resolve, then plan
            for cluster in CLUSTERS:
                connection = fresh.resolve(cluster)
                if not tls:
                    connection = replace(connection, host="127.0.0.1", connect_address=None, sslmode="disable",
                                         sslrootcert=None)
                plan = plan_cluster(desired, cluster, connection, secrets=secrets)
                assert not plan.actions, plan.actions[:3]

        results["noop_plan_tls_s_median"] = round(median_of(args.repeat, lambda: noop_plan(True)), 3)
        results["noop_plan_plain_s_median"] = round(median_of(args.repeat, lambda: noop_plan(False)), 3)
        results["tls_over_plain_ratio"] = round(
            float(results["noop_plan_tls_s_median"]) / float(results["noop_plan_plain_s_median"]), 2)  # type: ignore[arg-type]
    finally:
        down_local_clusters(state)
        stop_moto(state)
        shutil.rmtree(root, ignore_errors=True)
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
