#!/usr/bin/env bash
# How close is `pgferry bench --plan -j 2` to the real `pgferry clone -j 2`? For each pgbench
# scale, in one run on one machine: the plan's projected total, then RUNS measured clones into
# a fresh target database, and the error of the projection against their median.
#
# usage: benches/plan_accuracy.sh [SCALE...]      (default: 20 100)
# env:   RUNS (default 3), PGFERRY (default target/release/pgferry), PGBIN (server binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALES=("$@")
[ $# -eq 0 ] && SCALES=(20 100)
RUNS=${RUNS:-3}
PGFERRY=${PGFERRY:-$PWD/target/release/pgferry}
PGBIN=${PGBIN:-$(pg_config --bindir)}
[ -x "$PGFERRY" ] || cargo build --release

WORK=$(mktemp -d /tmp/pgferry-plan.XXXXXX)
chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for c in src dst; do [ -d "$WORK/$c" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/$c" -m immediate stop >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_cluster() { # name port
  [ "$(id -u)" = 0 ] && chown postgres "$WORK"
  as_pg "$PGBIN/initdb" -D "$WORK/$1" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$WORK/$1" -l "$WORK/$1.log" -w -o "-p $2 -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c shared_buffers=256MB -c maintenance_work_mem=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min" start >/dev/null
}
SP=$(free_port); start_cluster src "$SP"
DP=$(free_port); start_cluster dst "$DP"
export PGHOST=127.0.0.1 PGUSER=postgres PGOPTIONS="-c client_min_messages=warning"
psql_s() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -p "$SP" "$@"; }
psql_d() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -p "$DP" "$@"; }
now() { date +%s.%N; }
since() { python3 -c "print('%.2f' % ($(now)-$1))"; }
median() { python3 -c 'import sys,statistics; print("%.2f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

echo "# pgferry bench --plan vs pgferry clone -j 2 — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), $RUNS clones each"
echo
echo "| scale | DB size | plan took | projected | measured clone (median) | error |"
echo "|---|---|---|---|---|---|"
for SCALE in "${SCALES[@]}"; do
  psql_s -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench"
  "$PGBIN/pgbench" -q -i -s "$SCALE" -p "$SP" bench >/dev/null 2>&1
  psql_s -d bench -c "VACUUM ANALYZE"
  SIZE=$(psql_s -d bench -Atc "SELECT pg_size_pretty(pg_database_size('bench'))")
  t0=$(now)
  PROJ=$("$PGFERRY" bench --plan -j 2 -s "postgres://postgres@127.0.0.1:$SP/bench" \
          -t "postgres://postgres@127.0.0.1:$DP/postgres" --json | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["total_seconds"])')
  PT=$(since "$t0")
  C=()
  for run in $(seq "$RUNS"); do
    psql_d -d postgres -c "DROP DATABASE IF EXISTS bench"
    t0=$(now)
    "$PGFERRY" clone -j 2 -s "postgres://postgres@127.0.0.1:$SP/bench" -t "postgres://postgres@127.0.0.1:$DP/bench" >/dev/null 2>&1
    C+=("$(since "$t0")")
  done
  M=$(median "${C[@]}")
  ERR=$(python3 -c "print('%+.0f%%' % (100*($PROJ-$M)/$M))")
  echo "| $SCALE | $SIZE | ${PT}s | ${PROJ}s | ${M}s (${C[*]}) | $ERR |"
done
