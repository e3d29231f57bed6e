#!/usr/bin/env python3
"""Benchmark: render the Terraform stacks of N tenants generated in memory.

Measures the pure render (``render_files``), a first ``render_stacks`` into an empty directory
(every file written atomically with fsync), a re-render with no change (nothing written) and a
re-render after adding one tenant (only its directory written). Target: 10,000 tenants <= 5 s.

    .venv/bin/python bench/render_bench.py [--tenants 10000] [--engine native|terraform|both] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from tenantctl.model.types import DEFAULT_TIERS, Cluster, Model, Settings, Tenant
from tenantctl.render import render_files, render_stacks

T = TypeVar("T")


def generate_model(tenants: int, engine: str, clusters: int = 10) -> Model:
    cluster_objs = tuple(
        Cluster(name=f"shared-{i:02d}", identifier=f"shared-{i:02d}", min_acu=0.5, max_acu=64.0,
                engine_version="15.4", max_tenants=None, dedicated=False)
        for i in range(clusters)
    )
    tiers = tuple(tier.name for tier in DEFAULT_TIERS)
    tenant_objs = tuple(
        Tenant(
            name=f"client{i:05d}",
            databases=tuple(f"db{d}" for d in range(1, 2 + i % 3)),
            disabled_databases=(),
            allowed_ips=(f"109.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32",),
            rds_iam_auth=i % 2 == 0,
            tier=tiers[i % len(tiers)],
            cluster=cluster_objs[i % clusters].name,
            cluster_pinned=False,
            connection_limit=None,
            tags=(("team", f"team{i % 7}"),),
        )
        for i in range(tenants)
    )
    return Model(source="<generated>", settings=Settings(postgres_engine=engine), clusters=cluster_objs,
                 tenants=tenant_objs, tiers=tuple(sorted(DEFAULT_TIERS, key=lambda t: t.name)))


def timed(action: Callable[[], T]) -> tuple[float, float, T]:
    """(wall seconds, CPU seconds of this process, result). CPU time shows the work itself when
    the machine is shared; wall time is what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = action()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def bench(tenants: int, engine: str, out_root: Path) -> list[tuple[str, float, float, str]]:
    model = generate_model(tenants, engine)
    rows: list[tuple[str, float, float, str]] = []
    render_files(generate_model(2, engine))  # compile templates once, outside the timings

    wall, cpu, files = timed(lambda: render_files(model))
    size = sum(len(v) for v in files.values())
    rows.append(("render_files (pure, in memory)", wall, cpu, f"{len(files)} files, {size / 1e6:.1f} MB"))

    out = out_root / f"stacks-{engine}"
    shutil.rmtree(out, ignore_errors=True)
    smaller = replace(model, tenants=model.tenants[:-1])
    wall, cpu, result = timed(lambda: render_stacks(smaller, out))
    rows.append(("render_stacks, empty directory", wall, cpu, f"{len(result.written)} files written"))

    wall, cpu, result = timed(lambda: render_stacks(smaller, out))
    rows.append(("render_stacks, nothing changed", wall, cpu, f"{len(result.written)} written, "
                 f"{len(result.unchanged)} unchanged"))

    wall, cpu, result = timed(lambda: render_stacks(model, out))
    rows.append(("render_stacks, one tenant added", wall, cpu, f"{len(result.written)} written "
                 f"({', '.join(sorted({r.rsplit('/', 1)[0] for r in result.written}))})"))
    shutil.rmtree(out, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--engine", choices=("native", "terraform", "both"), default="both")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()

    engines = ("native", "terraform") if args.engine == "both" else (args.engine,)
    out_root = args.out or Path(tempfile.mkdtemp(prefix="render-bench-"))
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"tenants: {args.tenants}, clusters: 10, output: {out_root}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load}\n")
    print(f"{'engine':<10} {'measurement':<34} {'wall s':>8} {'cpu s':>7}  detail")
    print("-" * 110)
    try:
        for engine in engines:
            for name, wall, cpu, detail in bench(args.tenants, engine, out_root):
                print(f"{engine:<10} {name:<34} {wall:>8.2f} {cpu:>7.2f}  {detail}")
    finally:
        if args.out is None:
            shutil.rmtree(out_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
