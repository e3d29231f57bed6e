"""Benchmark: `tenantctl validate` on a generated clients file vs python-hcl2 parsing the same HCL.

    python bench/validate_bench.py [--tenants 10000] [--repeat 3]

Reports wall time of the whole `validate` path (read + parse + validate + place) for HCL and JSON, and
of python-hcl2 (the usual Python HCL parser; parse only, no validation) on the same HCL file, in the
same run. Targets (issue 2): validate 10,000 tenants in HCL <= 2 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_clients import as_json, hcl

from tenantctl.model import load_model


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def cli_wall(path: Path, repeat: int) -> list[float]:
    """The whole command, process start included, as a user runs it."""
    exe = Path(sys.executable).with_name("tenantctl")
    return timed(lambda: subprocess.run([str(exe), "validate", str(path)], check=True, capture_output=True), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hcl2-repeat", type=int, default=1, help="python-hcl2 is slow: runs of it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hcl_path = Path(tmp, "clients.tfvars")
        json_path = Path(tmp, "clients.tfvars.json")
        hcl_path.write_text(hcl(args.tenants))
        json_path.write_text(as_json(args.tenants))
        rows: list[tuple[str, list[float]]] = [
            ("tenantctl load_model (HCL)", timed(lambda: load_model(hcl_path), args.repeat)),
            ("tenantctl load_model (JSON)", timed(lambda: load_model(json_path), args.repeat)),
            ("`tenantctl validate` CLI (HCL)", cli_wall(hcl_path, args.repeat)),
            ("`tenantctl validate` CLI (JSON)", cli_wall(json_path, args.repeat)),
        ]
        try:
            import hcl2  # type: ignore[import-not-found]

            def parse_with_hcl2() -> object:
                with hcl_path.open() as fh:
                    return hcl2.load(fh)

            rows.append(("python-hcl2 8.1.4 parse only (HCL)", timed(parse_with_hcl2, args.hcl2_repeat)))
        except ImportError:
            print("python-hcl2 not installed: pip install 'python-hcl2==8.1.4' for the peer figure")
    print(f"\nvalidate benchmark: {args.tenants} tenants (generated HCL and JSON files), "
          f"median of runs\n")
    print(f"{'what':40} {'median s':>9} {'runs':>5}")
    for name, times in rows:
        print(f"{name:40} {statistics.median(times):9.3f} {len(times):5d}")
    medians = {name: statistics.median(times) for name, times in rows}
    peer = medians.get("python-hcl2 8.1.4 parse only (HCL)")
    ours = medians["`tenantctl validate` CLI (HCL)"]
    print(f"\ntarget: validate HCL <= 2.0 s -> {'PASS' if ours <= 2.0 else 'FAIL'} ({ours:.2f} s)")
    if peer:
        print(f"python-hcl2 / tenantctl validate (HCL, CLI wall): {peer / ours:.1f}x "
              f"(tenantctl parses AND validates; python-hcl2 only parses)")


if __name__ == "__main__":
    main()
