"""Benchmark: `tenantctl plan` wall time with many applied tenants vs few.

Measures, for a project with SMALL applied tenants and one with LARGE applied tenants (one cluster,
local target: real Terraform + AWS provider against moto):

* `tenantctl plan` with every tenant applied and unchanged (no --all): hashing only, no Terraform run;
* onboarding one tenant: add it to the clients file, `tenantctl plan` (init + plan of its stack only).

Each tenant has its own stack and state, so onboarding cost must not grow with the tenant count
(target: ratio LARGE/SMALL <= 1.5; the unchanged plan with 200 tenants <= 2 s).

Usage:  .venv/bin/python bench/plan_bench.py [--small 5] [--large 200] [--repeat 3] [--workdir DIR]
Setup applies every tenant for real once (minutes for 200); --workdir keeps and reuses it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tenantctl.local.moto import stop_moto
from tenantctl.model import load_model
from tenantctl.terraform import pipeline
from tenantctl.terraform.environment import terraform_environment
from tenantctl.terraform.toolchain import BINARY_ENV, install_toolchain
from tenantctl.terraform.workspace import Workspace


def tenant_entry(index: int, prefix: str = "t") -> str:
    return (f'  {{ name = "{prefix}{index:04d}", databases = {{ app = true }}, '
            f'allowed_ips = ["109.241.{index // 250}.{index % 250 + 1}/32"], rds_iam_auth = true }},\n')


def clients_text(count: int, extra: list[str] | None = None) -> str:
    return (
        'settings = { region = "eu-west-1", target = "local" }\n'
        "clusters = {\n  shared-01 = { min_acu = 0.5, max_acu = 16, max_tenants = 5000 }\n}\n"
        "clients = [\n" + "".join(tenant_entry(i) for i in range(count)) + "".join(extra or []) + "]\n"
    )


def setup(root: Path, count: int, parallel: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    clients = root / "clients.tfvars"
    marker = root / ".bench-applied"
    if marker.is_file() and marker.read_text() == str(count):
        print(f"reusing applied project {root} ({count} tenants)", flush=True)
        return
    clients.write_text(clients_text(count))
    workspace = Workspace.at(root)
    options = pipeline.PipelineOptions(parallelism=parallel)
    for round_ in range(3):  # cluster, then tenants, then nothing left
        model = load_model(clients)
        environment = terraform_environment(model, workspace)
        started = time.monotonic()
        result = pipeline.plan(model, workspace, environment, options=options)
        print(f"  setup plan {round_}: {result.status} in {time.monotonic() - started:.1f}s", flush=True)
        if result.status == pipeline.PlanStatus.NO_CHANGES:
            break
        if result.status != pipeline.PlanStatus.CHANGES:
            raise SystemExit(f"setup plan failed: {[(s.stack, s.error) for s in result.stacks if s.error]}")
        started = time.monotonic()
        applied = pipeline.apply(workspace, environment, options=options)
        print(f"  setup apply {round_}: {applied.status} in {time.monotonic() - started:.1f}s", flush=True)
        if applied.status != pipeline.PlanStatus.APPLIED:
            raise SystemExit("setup apply failed")
    marker.write_text(str(count))


def timed_cli(root: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    argv = [sys.executable, "-m", "tenantctl.cli.main", *args]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False, env=os.environ.copy())
    elapsed = time.monotonic() - started
    if done.returncode not in (0, 4):
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, done


def measure(root: Path, count: int, repeat: int) -> dict[str, list[float]]:
    clients = root / "clients.tfvars"
    unchanged, onboarding = [], []
    for _ in range(repeat):
        elapsed, done = timed_cli(root, "plan", "--quiet", "--detailed-exitcode")
        assert done.returncode == 0, done.stdout
        unchanged.append(elapsed)
    for run in range(repeat):
        clients.write_text(clients_text(count, [tenant_entry(9000 + run, prefix="new")]))
        elapsed, done = timed_cli(root, "plan", "--quiet", "--detailed-exitcode", "--format", "json")
        assert done.returncode == 4, done.stdout
        assert f'"tenants/new{9000 + run:04d}"' in done.stdout
        onboarding.append(elapsed)
    clients.write_text(clients_text(count))
    return {"unchanged": unchanged, "onboarding": onboarding}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=5)
    parser.add_argument("--large", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=pipeline.DEFAULT_PARALLELISM)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the applied projects here for reuse")
    args = parser.parse_args()
    os.environ.setdefault(BINARY_ENV, str(install_toolchain().terraform))
    base = args.workdir or Path(tempfile.mkdtemp(prefix="tenantctl-bench-"))
    results = {}
    try:
        for count in (args.small, args.large):
            root = base / f"tenants-{count}"
            print(f"setting up {count} applied tenants in {root}", flush=True)
            started = time.monotonic()
            setup(root, count, args.parallel)
            print(f"  setup took {time.monotonic() - started:.0f}s", flush=True)
            results[count] = measure(root, count, args.repeat)
    finally:
        if args.workdir is None:
            for count in (args.small, args.large):
                stop_moto(base / f"tenants-{count}" / ".tenantctl")

    def median(values: list[float]) -> float:
        return statistics.median(values)

    print()
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"terraform: {os.environ[BINARY_ENV]}; machine: {os.cpu_count()} CPUs; repeat={args.repeat}; "
          "times are wall-clock seconds of `tenantctl plan` (CLI process, median [min-max])")
    print()
    print(f"| {'scenario':<44} | {args.small:>4} tenants | {args.large:>4} tenants | ratio |")
    print(f"| {'-' * 44} | {'-' * 12} | {'-' * 12} | {'-' * 5} |")
    for key, label in (("unchanged", "plan, all applied & unchanged (no --all)"),
                       ("onboarding", "plan after onboarding one tenant")):
        small, large = results[args.small][key], results[args.large][key]
        ratio = median(large) / median(small)
        print(f"| {label:<44} | {median(small):>5.2f} [{min(small):.1f}-{max(small):.1f}] "
              f"| {median(large):>5.2f} [{min(large):.1f}-{max(large):.1f}] | {ratio:5.2f} |")
    print()
    onboarding_ratio = median(results[args.large]["onboarding"]) / median(results[args.small]["onboarding"])
    unchanged_large = median(results[args.large]["unchanged"])
    print(f"onboarding ratio {args.large}/{args.small}: {onboarding_ratio:.2f} (target <= 1.5): "
          f"{'OK' if onboarding_ratio <= 1.5 else 'MISSED'}")
    print(f"unchanged plan with {args.large} tenants: {unchanged_large:.2f}s (target <= 2 s): "
          f"{'OK' if unchanged_large <= 2.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
