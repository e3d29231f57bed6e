"""Wall time of `tenantctl onboard` of one tenant into a local setup that already has N tenants.

Builds a project with N password tenants on one shared cluster (local target: moto + local
PostgreSQL, real Terraform), converges it (not timed), then onboards one more tenant and prints the
time per step: edit + validate, render, terraform plan, postgres plan, terraform apply, postgres apply,
routing map.

    .venv/bin/python bench/onboard_bench.py --tenants 50 [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tenantctl.model import load_model
from tenantctl.model.edit import TenantBlock
from tenantctl.terraform.toolchain import BINARY_ENV, install_toolchain
from tenantctl.workflow import deploy
from tenantctl.workflow.onboard import Timings, onboard

HEADER = """\
settings = {
  region                   = "eu-west-1"
  target                   = "local"
  allow_private_source_ips = true
}

clusters = {
  shared-01 = { min_acu = 0.5, max_acu = 16, max_tenants = 1000 }
}

clients = [
"""


def clients_file(tenants: int) -> str:
    rows = [f'  {{ name = "t{i:03d}", databases = {{ db1 = true }}, allowed_ips = ["127.0.0.1/32"], '
            f'rds_iam_auth = false, cluster = "shared-01" }},\n' for i in range(tenants)]
    return HEADER + "".join(rows) + "]\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="Project directory to keep (default: a temporary one).")
    args = parser.parse_args()
    os.environ[BINARY_ENV] = str(install_toolchain().terraform)
    root = args.keep or Path(tempfile.mkdtemp(prefix="tenantctl-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    clients = root / "clients.tfvars"
    clients.write_text(clients_file(args.tenants))
    os.chdir(root)
    try:
        started = time.monotonic()
        result = deploy.converge(root, load_model(clients))
        if result.failed:
            print("setup failed", file=sys.stderr)
            return 1
        setup = time.monotonic() - started
        timings = Timings()
        block = TenantBlock("newcomer", ("db1", "db2"), ("127.0.0.1/32",), False)
        started = time.monotonic()
        outcome = onboard(root, clients, block, timings=timings)
        wall = time.monotonic() - started
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        print(f"setup (not timed below): {args.tenants} tenants converged in {setup:.1f}s")
        print(f"onboard of 1 tenant into {args.tenants} tenants: {outcome.status}")
        print(f"{'step':<30}{'seconds':>10}")
        for step, seconds in timings.steps.items():
            print(f"{step:<30}{seconds:>10.2f}")
        print(f"{'total (wall)':<30}{wall:>10.2f}")
        return 0
    finally:
        from tenantctl.local.moto import stop_moto
        from tenantctl.local.pgserver import down_local_clusters

        down_local_clusters(root / deploy.STATE_DIR)
        stop_moto(root / deploy.STATE_DIR)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
