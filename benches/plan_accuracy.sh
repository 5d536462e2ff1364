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
source benches/lib.sh
bench_tools
bench_pair plan ""

echo "# pgferry bench --plan vs pgferry clone -j 2 — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, PostgreSQL $(pg_version), $RUNS clones each"
echo
echo "| scale | DB size | plan took | projected | measured clone (median) | error |"
echo "|---|---|---|---|---|---|"
for SCALE in "${SCALES[@]}"; do
  pgbench_db "$SCALE"
  t0=$(now)
  PROJ=$("$PGFERRY" bench --plan -j 2 -s "$(uri_s bench)" \
          -t "$(uri_d postgres)" --json | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["total_seconds"])')
  PT=$(since "$t0")
  C=()
  for run in $(seq "$RUNS"); do
    psql_d -d postgres -c "DROP DATABASE IF EXISTS bench"
    t0=$(now)
    "$PGFERRY" clone -j 2 -s "$(uri_s bench)" -t "$(uri_d bench)" >/dev/null 2>&1
    C+=("$(since "$t0")")
  done
  M=$(median "${C[@]}")
  ERR=$(python3 -c "print('%+.0f%%' % (100*($PROJ-$M)/$M))")
  echo "| $SCALE | $SIZE | ${PT}s | ${PROJ}s | ${M}s (${C[*]}) | $ERR |"
done
