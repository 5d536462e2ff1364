#!/usr/bin/env bash
# Times, in one run on one machine, a dump to a directory and its restore into a second local
# cluster, of a pgbench database, by
#   1. pgferry dump -j 2 (zstd) + pgferry restore -j 2
#   2. pg_dump -Fd -j 2 (its default gzip) + pg_restore -j 2
# and prints medians of RUNS runs, the ratio, and the archive sizes, as a Markdown table.
#
# usage: benches/dump_restore.sh [SCALE...]      (default: 20 100)
# env:   RUNS (default 3), PGFERRY (default target/release/pgferry), PGBIN (server binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALES=("$@")
[ $# -eq 0 ] && SCALES=(20 100)
RUNS=${RUNS:-3}
source benches/lib.sh
bench_tools

bench_pair bench ""

echo "# pgferry dump+restore vs pg_dump+pg_restore — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, PostgreSQL $(pg_version), $RUNS runs each"
echo
echo "| scale | DB size | pgferry dump | pgferry restore | pgferry total | pg_dump | pg_restore | peer total | pgferry/peer | archive: pgferry / pg_dump |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for SCALE in "${SCALES[@]}"; do
  pgbench_db "$SCALE"
  PD=(); PR=(); PT=(); GD=(); GR=(); GT=()
  for run in $(seq "$RUNS"); do
    # pgferry
    psql_d -d postgres -c "DROP DATABASE IF EXISTS t_pgf"
    rm -rf "$WORK/pgf"
    t0=$(now)
    "$PGFERRY" dump -s "postgres://postgres@127.0.0.1:$SP/bench" -o "$WORK/pgf" -j 2 >/dev/null
    PD+=("$(since "$t0")"); t1=$(now)
    "$PGFERRY" restore -i "$WORK/pgf" -t "postgres://postgres@127.0.0.1:$DP/t_pgf" -j 2 >/dev/null
    PR+=("$(since "$t1")"); PT+=("$(since "$t0")")
    PGF_SIZE=$(du -sm "$WORK/pgf" | cut -f1)
    # pg_dump + pg_restore
    psql_d -d postgres -c "DROP DATABASE IF EXISTS t_dump" -c "CREATE DATABASE t_dump"
    rm -rf "$WORK/dump"
    t0=$(now)
    "$PGBIN/pg_dump" -p "$SP" -Fd -j 2 -f "$WORK/dump" bench
    GD+=("$(since "$t0")"); t1=$(now)
    "$PGBIN/pg_restore" -p "$DP" -j 2 -d t_dump "$WORK/dump"
    GR+=("$(since "$t1")"); GT+=("$(since "$t0")")
    DUMP_SIZE=$(du -sm "$WORK/dump" | cut -f1)
  done
  P=$(median "${PT[@]}"); G=$(median "${GT[@]}")
  echo "| $SCALE | $SIZE | $(median "${PD[@]}") s | $(median "${PR[@]}") s | ${P} s | $(median "${GD[@]}") s | $(median "${GR[@]}") s | ${G} s | $(python3 -c "print('%.2f' % ($P/$G))") | ${PGF_SIZE} MB / ${DUMP_SIZE} MB |"
  echo "  runs (s): pgferry dump ${PD[*]} restore ${PR[*]} total ${PT[*]} | pg_dump ${GD[*]} pg_restore ${GR[*]} total ${GT[*]}" >&2
done
