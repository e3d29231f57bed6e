#!/usr/bin/env bash
# The local embedded default, end to end (`make demo`; VENV is the virtualenv with tenantctl installed).
#
# Copies clients.tfvars.example into .tenantctl-demo/, starts the local target (moto + one PostgreSQL
# server per cluster), converges (plan/apply until nothing is deferred), starts the proxy in the
# background, connects as client01 (a password tenant) through the proxy to its db1 with psql, shows
# client01 refused on client02's database, prints the routing map and the tenants, and ends with a hint
# for `tenantctl local down`. Non-interactive; exits non-zero on the first failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
# The Makefile passes VENV relative to the repository; the script changes directory before using it.
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
TENANTCTL="$VENV/bin/tenantctl"
DEMO_DIR="${DEMO_DIR:-$REPO/.tenantctl-demo}"
PROXY_PORT="${PROXY_PORT:-6432}"
MAX_ROUNDS=4

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { printf '\033[31mdemo failed: %s\033[0m\n' "$*" >&2; exit 1; }

[ -x "$TENANTCTL" ] || fail "$TENANTCTL not found: run \`make setup\` (or set VENV)"
command -v psql >/dev/null || fail "psql not found: install the PostgreSQL client"

mkdir -p "$DEMO_DIR"
chmod 755 "$DEMO_DIR"  # the local PostgreSQL servers run as the postgres user when started as root
cp "$REPO/clients.tfvars.example" "$DEMO_DIR/clients.tfvars"
cd "$DEMO_DIR"

step "tenantctl local up (moto + one PostgreSQL server per cluster)"
"$TENANTCTL" local up

step "converge: plan/apply until nothing is pending (a new cluster defers its tenants one round)"
converged=""
for round in $(seq 1 $MAX_ROUNDS); do
  set +e
  # --parallel 1: concurrent `terraform init`s race on the shared provider plugin cache
  "$TENANTCTL" plan --quiet --detailed-exitcode --parallel 1 >plan.txt
  code=$?
  set -e
  case "$code" in
    0) converged=yes; echo "round $round: no changes pending"; break ;;
    4) echo "round $round: changes pending, applying"; "$TENANTCTL" apply --auto-approve --parallel 1 ;;
    *) cat plan.txt; fail "tenantctl plan exited $code" ;;
  esac
done
[ -n "$converged" ] || fail "still changes pending after $MAX_ROUNDS rounds"

step "start the proxy on 127.0.0.1:$PROXY_PORT (background; hot-reloads .tenantctl/routes.json)"
if [ -f proxy.pid ] && kill -0 "$(cat proxy.pid)" 2>/dev/null; then
  kill "$(cat proxy.pid)"; sleep 1
fi
nohup "$TENANTCTL" proxy --routes .tenantctl/routes.json --listen "127.0.0.1:$PROXY_PORT" >proxy.log 2>&1 &
echo $! >proxy.pid
for _ in $(seq 1 100); do
  grep -q "listening on" proxy.log 2>/dev/null && break
  kill -0 "$(cat proxy.pid)" 2>/dev/null || { cat proxy.log; fail "the proxy exited"; }
  sleep 0.2
done
grep -q "listening on" proxy.log || fail "the proxy did not start (see $DEMO_DIR/proxy.log)"
grep "listening on" proxy.log

step "client01 (password tenant) connects through the proxy to its db1"
DSN="$("$TENANTCTL" credentials client01 --via "127.0.0.1:$PROXY_PORT" --database db1 --reveal)"
psql "$DSN" -v ON_ERROR_STOP=1 -c "SELECT current_user, current_database(), version() AS server" \
  || fail "client01 could not connect through the proxy"

step "client01 is refused on client02's database client02_db1 (the proxy routes only a tenant's own logical databases)"
OTHER_DSN="${DSN/dbname=db1/dbname=client02_db1}"
[ "$OTHER_DSN" != "$DSN" ] || fail "unexpected connection string shape from tenantctl credentials"
if psql "$OTHER_DSN" -c "SELECT 1" 2>refused.txt; then
  fail "client01 reached client02's database"
fi
echo "refused as expected: $(head -n 1 refused.txt)"
# Every refusal reads like a wrong password (so tenants and databases cannot be enumerated); the
# proxy's log says why.
for _ in $(seq 1 10); do
  grep -q "refused client01" proxy.log && break
  sleep 0.1
done
echo "proxy log: $(grep "refused client01" proxy.log | tail -n 1 | sed 's/^.*tenantctl\.proxy: //')"

step "routing map"
"$TENANTCTL" routes show .tenantctl/routes.json

step "tenants"
"$TENANTCTL" status

cat <<EOF

Demo done. Everything lives in $DEMO_DIR.
  stop the proxy:        kill \$(cat $DEMO_DIR/proxy.pid)
  stop the local target: (cd $DEMO_DIR && $TENANTCTL local down)
EOF
