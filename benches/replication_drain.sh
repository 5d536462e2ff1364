#!/usr/bin/env bash
# Drain of a replication backlog: pgferry's applier vs PostgreSQL's own subscription, on the
# same two local clusters in the same run (medians of RUNS runs, ratios as a Markdown table).
#
# Workloads (a backlog is built on the source while no consumer runs, then drained):
#   pgbench  pgbench -i -s 10, then pgbench -c 4 -N-less TPC-B for TXNS transactions
#   pgbench_fk  the same with pgbench's foreign keys (-i --foreign-keys): in the ordered
#            apply mode every table is then related to the others, so they keep source order
#   bulk     1,000,000 rows inserted in 1,000-row transactions
# Each backlog ends with one marker row; a consumer is done when the marker is on the target.
#   pgferry: `clone --follow` run until streaming, stopped (slot kept), backlog, then
#            `clone --follow --max-replication-lag 0 --stop-replication` (resumes, drains,
#            cuts over and exits): timed to the marker, and to the process exit.
#   native:  schema and data through pg_dump | psql, publication FOR ALL TABLES and a slot
#            made before the backlog, then CREATE SUBSCRIPTION (create_slot = false,
#            copy_data = false): timed to the marker.
#   stream only (the floor): before the subscription starts, examples/stream_floor reads the
#            same slot's backlog through pgferry's replication connection and decoder, applies
#            nothing and confirms nothing: what the source's walsender costs by itself.
#
# Apply modes (MODES, default "replica"): pgferry's target user decides how it applies.
#   replica  the bootstrap superuser: session_replication_role = replica
#   aiven    a CREATEDB/CREATEROLE user (no superuser) with aiven_extras (the test stand-in,
#            tests/fixtures/aiven_extras, installed into the server's share directory) in the
#            target database: the replica role through aiven_extras.session_replication_role
#   ordered  the same user without aiven_extras: the ordered apply (no replica role)
#
# usage: benches/replication_drain.sh [pgbench] [bulk]     (default: both)
# env:   RUNS (default 3), TXNS (pgbench transactions, default 40000), MODES (default replica),
#        PGFERRY (default target/release/pgferry), PGBIN (server binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOADS=("$@")
[ $# -eq 0 ] && WORKLOADS=(pgbench bulk)
RUNS=${RUNS:-3}
read -r -a MODE_LIST <<<"${MODES:-replica}"
TXNS=${TXNS:-40000}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
source benches/lib.sh
bench_tools
FLOOR=${FLOOR:-$PWD/target/release/examples/stream_floor}
[ -x "$FLOOR" ] || cargo build --release --example stream_floor

PGF_PID=
BENCH_ON_EXIT='[ -n "$PGF_PID" ] && kill "$PGF_PID" 2>/dev/null'
bench_pair drain "-c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 -c max_logical_replication_workers=8"
if [[ " ${MODE_LIST[*]} " == *" aiven "* ]]; then
  ext="$("$PGBIN/pg_config" --sharedir)/extension"
  cp tests/fixtures/aiven_extras/aiven_extras.control tests/fixtures/aiven_extras/aiven_extras--1.0.sql "$ext/"
fi
uri_d() { echo "postgres://${2:-postgres}@127.0.0.1:$DP/$1"; }
"$PGBIN/psql" -X -q -p "$DP" -d postgres -c "CREATE ROLE avnadmin LOGIN CREATEDB CREATEROLE" >/dev/null

# The source database of one run: schema and initial data, no backlog yet.
prepare() { # workload db
  psql_s -d postgres -c "DROP DATABASE IF EXISTS $2" -c "CREATE DATABASE $2"
  case $1 in
    pgbench|pgbench_fk)
      fk=; [ "$1" = pgbench_fk ] && fk=--foreign-keys
      "$PGBIN/pgbench" -q -i -s 10 $fk -p "$SP" "$2" >/dev/null 2>&1
      # pgbench_history has no key; the same identity on both sides (only inserted to).
      psql_s -d "$2" -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL" ;;
    bulk)
      psql_s -d "$2" -c "CREATE TABLE bulk (id bigint PRIMARY KEY, v text, n int, at timestamptz)" ;;
  esac
  psql_s -d "$2" -c "CREATE TABLE drain_marker (id int PRIMARY KEY)" -c "VACUUM ANALYZE"
}

backlog() { # workload db
  case $1 in
    pgbench|pgbench_fk) "$PGBIN/pgbench" -n -c 4 -j 2 -t $((TXNS / 4)) -p "$SP" "$2" >/dev/null 2>&1 ;;
    bulk) psql_s -d "$2" -c "DO \$\$ BEGIN FOR t IN 0..999 LOOP
            INSERT INTO bulk SELECT g, md5(g::text), g % 1000, now()
              FROM generate_series(t * 1000 + 1, t * 1000 + 1000) g;
            COMMIT; END LOOP; END \$\$" ;;
  esac
  psql_s -d "$2" -c "INSERT INTO drain_marker VALUES (1)"
}

# Waits on the target (one session, a fresh snapshot per check) until the marker arrives.
wait_marker() { # db
  psql_d -d "$1" -c "DO \$\$ BEGIN WHILE NOT EXISTS (SELECT 1 FROM drain_marker) LOOP
      PERFORM pg_sleep(0.01); END LOOP; END \$\$"
}

changes() { # workload db: row changes in the backlog (for the rate)
  case $1 in
    pgbench|pgbench_fk) psql_s -d "$2" -Atc "SELECT 4 * count(*) FROM pgbench_history" ;;
    bulk) echo 1000000 ;;
  esac
}

run_pgferry() { # workload mode
  local db=d_pgf user=postgres
  [ "$2" = replica ] || user=avnadmin
  prepare "$1" "$db"
  psql_d -d postgres -c "DROP DATABASE IF EXISTS $db"
  "$PGFERRY" clone --follow -s "$(uri_s $db)" -t "$(uri_d $db $user)" >"$WORK/pgf1.log" 2>&1 &
  PGF_PID=$!
  until psql_d -d "$db" -Atc "SELECT count(*) FROM pgferry.apply_progress" 2>/dev/null | grep -q 1; do
    kill -0 "$PGF_PID" 2>/dev/null || { cat "$WORK/pgf1.log" >&2; exit 1; }
    sleep 0.2
  done
  sleep 1
  kill -TERM "$PGF_PID"; wait "$PGF_PID" || true; PGF_PID=
  [ "$2" = aiven ] && psql_d -U avnadmin -d "$db" -c "CREATE EXTENSION aiven_extras"
  backlog "$1" "$db"
  CHANGES=$(changes "$1" "$db")
  local t0; t0=$(now)
  "$PGFERRY" -v clone --follow --max-replication-lag 0 --stop-replication \
      -s "$(uri_s $db)" -t "$(uri_d $db $user)" >"$WORK/pgf2.log" 2>&1 &
  PGF_PID=$!
  wait_marker "$db"
  T_MARK=$(python3 -c "print($(now)-$t0)")
  wait "$PGF_PID" || { cat "$WORK/pgf2.log" >&2; exit 1; }
  PGF_PID=
  # The mode pgferry reports is the one asked for.
  local want
  case $2 in replica) want="session_replication_role = replica" ;; aiven) want="through aiven_extras" ;; ordered) want="ordered apply" ;; esac
  grep -q "applying changes with.*$want" "$WORK/pgf2.log" || { echo "mode $2 not in effect:" >&2; cat "$WORK/pgf2.log" >&2; exit 1; }
  T_EXIT=$(python3 -c "print($(now)-$t0)")
}

run_native() { # workload
  local db=d_nat
  prepare "$1" "$db"
  psql_d -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  "$PGBIN/pg_dump" -p "$SP" "$db" | psql_d -d "$db" >/dev/null
  psql_s -d "$db" -c "CREATE PUBLICATION p FOR ALL TABLES" \
    -c "SELECT pg_create_logical_replication_slot('s_$db', 'pgoutput')" >/dev/null
  backlog "$1" "$db"
  local end; end=$(psql_s -d "$db" -Atc "SELECT pg_current_wal_insert_lsn()")
  # Binary values, as pgferry asks for between servers of the same major.
  T_FLOOR=$("$FLOOR" "$(uri_s "$db")" "s_$db" p "$end" binary | awk '{print $1}')
  local t0; t0=$(now)
  psql_d -d "$db" -c "CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 port=$SP user=postgres dbname=$db' \
      PUBLICATION p WITH (create_slot = false, slot_name = 's_$db', copy_data = false)"
  wait_marker "$db"
  T_NATIVE=$(python3 -c "print($(now)-$t0)")
  psql_d -d "$db" -c "DROP SUBSCRIPTION sub"
  psql_s -d "$db" -c "DROP PUBLICATION p"
}

echo "# Replication drain: pgferry vs native subscription — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, PostgreSQL $(pg_version), $RUNS runs each"
echo
echo "| workload | apply mode | row changes | stream only (floor) | pgferry (to data) | pgferry (to cutover exit) | native subscription | native/pgferry (data) | native/pgferry (exit) |"
echo "|---|---|---|---|---|---|---|---|---|"
for W in "${WORKLOADS[@]}"; do
  declare -A A=() E=()
  N=(); F=()
  for run in $(seq "$RUNS"); do
    for M in "${MODE_LIST[@]}"; do
      run_pgferry "$W" "$M"; A[$M]+=" $T_MARK"; E[$M]+=" $T_EXIT"
      echo "  $W run $run: pgferry ($M) $T_MARK s (exit $T_EXIT s)" >&2
    done
    run_native "$W"; N+=("$T_NATIVE"); F+=("$T_FLOOR")
    echo "  $W run $run: native $T_NATIVE s, stream only $T_FLOOR s" >&2
  done
  PN=$(median "${N[@]}"); PF=$(median "${F[@]}")
  for M in "${MODE_LIST[@]}"; do
    # shellcheck disable=SC2086
    PA=$(median ${A[$M]}); PE=$(median ${E[$M]})
    echo "| $W | $M | $CHANGES | ${PF} s | ${PA} s | ${PE} s | ${PN} s | $(python3 -c "print('%.2f' % ($PN/$PA))") | $(python3 -c "print('%.2f' % ($PN/$PE))") |"
    echo "  runs (s, $M): pgferry${A[$M]} | pgferry exit${E[$M]}" >&2
  done
  echo "  runs (s): native ${N[*]} | stream only ${F[*]}" >&2
  unset A E
done
