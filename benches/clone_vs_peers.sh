#!/usr/bin/env bash
# Times, in one run on one machine, the copy of a pgbench database between two local clusters by
#   1. pgferry clone -j 2
#   2. pg_dump -Fd -j2 + pg_restore -j2           (the classic way)
#   3. pgcopydb clone --table-jobs 2 --index-jobs 2 (Debian package pgcopydb)
#   4. the raw bound: one binary COPY pipe of pgbench_accounts (psql | psql) + its PK build
# and prints medians of RUNS runs, ratios, and pgferry's peak RSS, as a Markdown table.
#
# usage: benches/clone_vs_peers.sh [SCALE...]      (default: 20 100)
# env:   RUNS (default 3), PGFERRY (default target/release/pgferry), PGBIN (server binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALES=("${@:-20 100}")
[ $# -eq 0 ] && SCALES=(20 100)
RUNS=${RUNS:-3}
source benches/lib.sh
bench_tools
command -v pgcopydb >/dev/null || { echo "pgcopydb missing: apt-get install -y pgcopydb" >&2; exit 1; }

bench_pair bench "-c wal_level=logical"

# The machine may be shared: the load average says how much the numbers can be trusted.
echo "# pgferry clone vs peers — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, PostgreSQL $(pg_version), $RUNS runs each, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| scale | DB size | pgferry clone | pg_dump+pg_restore | pgcopydb | raw COPY bound | pgferry/best peer | pgferry/raw | pgferry peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|"
for SCALE in "${SCALES[@]}"; do
  pgbench_db "$SCALE"
  T_PGF=(); T_DUMP=(); T_COPYDB=(); T_RAW=(); RSS=()
  for run in $(seq "$RUNS"); do
    # pgferry
    psql_d -d postgres -c "DROP DATABASE IF EXISTS t_pgf"
    t0=$(now)
    /usr/bin/time -v -o "$WORK/time.txt" "$PGFERRY" clone -s "postgres://postgres@127.0.0.1:$SP/bench" \
        -t "postgres://postgres@127.0.0.1:$DP/t_pgf" -j 2 --index-jobs 2 >/dev/null
    T_PGF+=("$(python3 -c "print($(now)-$t0)")")
    RSS+=("$(awk -F: '/Maximum resident/ {print $2/1024}' "$WORK/time.txt")")
    # pg_dump + pg_restore
    psql_d -d postgres -c "DROP DATABASE IF EXISTS t_dump" -c "CREATE DATABASE t_dump"
    rm -rf "$WORK/dump"
    t0=$(now)
    "$PGBIN/pg_dump" -p "$SP" -Fd -j 2 -f "$WORK/dump" bench
    "$PGBIN/pg_restore" -p "$DP" -j 2 -d t_dump "$WORK/dump"
    T_DUMP+=("$(python3 -c "print($(now)-$t0)")")
    # pgcopydb
    psql_d -d postgres -c "DROP DATABASE IF EXISTS t_copydb" -c "CREATE DATABASE t_copydb"
    rm -rf "$WORK/copydb"
    t0=$(now)
    PGCOPYDB_SOURCE_PGURI="postgres://postgres@127.0.0.1:$SP/bench" \
    PGCOPYDB_TARGET_PGURI="postgres://postgres@127.0.0.1:$DP/t_copydb" \
      pgcopydb clone --dir "$WORK/copydb" --table-jobs 2 --index-jobs 2 >/dev/null 2>"$WORK/copydb.log" \
      || { tail -5 "$WORK/copydb.log" >&2; exit 1; }
    T_COPYDB+=("$(python3 -c "print($(now)-$t0)")")
    # raw bound: the biggest table through one binary COPY pipe, then its primary key
    psql_d -d postgres -c "DROP DATABASE IF EXISTS t_raw" -c "CREATE DATABASE t_raw"
    psql_d -d t_raw -c "CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84))"
    t0=$(now)
    psql_s -d bench -c "COPY pgbench_accounts TO STDOUT (FORMAT binary)" \
      | psql_d -d t_raw -c "COPY pgbench_accounts FROM STDIN (FORMAT binary)"
    psql_d -d t_raw -c "ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)"
    T_RAW+=("$(python3 -c "print($(now)-$t0)")")
  done
  P=$(median "${T_PGF[@]}"); D=$(median "${T_DUMP[@]}"); C=$(median "${T_COPYDB[@]}"); R=$(median "${T_RAW[@]}")
  M=$(median "${RSS[@]}")
  BEST=$(python3 -c "print(min($D,$C))")
  echo "| $SCALE | $SIZE | ${P} s | ${D} s | ${C} s | ${R} s | $(python3 -c "print('%.2f' % ($P/$BEST))") | $(python3 -c "print('%.2f' % ($P/$R))") | ${M%.*} MB |"
  echo "  load average after scale $SCALE: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  echo "  runs (s): pgferry ${T_PGF[*]} | dump+restore ${T_DUMP[*]} | pgcopydb ${T_COPYDB[*]} | raw ${T_RAW[*]}" >&2
done
