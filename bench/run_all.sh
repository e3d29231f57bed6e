#!/usr/bin/env bash
# `make bench`: every benchmark of README's "Benchmarks" table, one after another, each with its documented
# arguments. Slow (tens of minutes; move_bench with 1 GB dominates). Each prints its own table or JSON;
# a failing benchmark is reported and the others still run; the exit code says whether any failed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${VENV:-$REPO/.venv}/bin/python"
cd "$REPO"

failed=()
run() {
  printf '\n\033[1m== %s\033[0m\n' "$*"
  "$PY" "$@" || failed+=("$1")
}

run bench/validate_bench.py --tenants 10000
run bench/render_bench.py --tenants 10000
run bench/plan_bench.py
run bench/postgres_bench.py --tenants 1000 --databases 2
run bench/resolver_bench.py --tenants 1000 --repeat 5
run bench/onboard_bench.py --tenants 50
run bench/refusal_timing.py --rounds 200
if command -v pgbouncer >/dev/null; then
  run bench/proxy_bench.py
else
  echo "skipped bench/proxy_bench.py: pgbouncer (its peer) is not installed: apt-get install pgbouncer"
fi
run bench/move_bench.py --size-mb 1024 --moves 10

if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
