#!/usr/bin/env bash
# The "10,000 tables read and rendered in < 10 s" acceptance check: a throwaway cluster gets
# 10,000 tables, each with a primary key, a secondary index and a foreign key to the previous
# table; then `pgferry schema` (catalog read + model + ordering + rendering) and, for
# comparison, `pg_dump --schema-only` are timed. Prints medians of RUNS runs as a Markdown
# table row (header included).
#
# usage: benches/schema_10k.sh [TABLES]        (default: 10000)
# env:   RUNS (default 3), PGFERRY (default target/release/pgferry), PGBIN (server binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
TABLES=${1:-10000}
RUNS=${RUNS:-3}
PGFERRY=${PGFERRY:-$PWD/target/release/pgferry}
PGBIN=${PGBIN:-$(pg_config --bindir)}
[ -x "$PGFERRY" ] || cargo build --release

WORK=$(mktemp -d /tmp/pgferry-schema10k.XXXXXX)
chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -d "$WORK/db" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/db" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
as_pg "$PGBIN/initdb" -D "$WORK/db" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
# Each table takes a few locks while created; the DO block creates them all in one
# transaction, hence the large lock table.
as_pg "$PGBIN/pg_ctl" -D "$WORK/db" -l "$WORK/db.log" -w -o "-p $PORT -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c max_locks_per_transaction=1024 -c shared_buffers=256MB" start >/dev/null
export PGHOST=127.0.0.1 PGUSER=postgres PGPORT=$PORT PGOPTIONS="-c client_min_messages=warning"
psql_q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; print("%.2f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

psql_q -d postgres -c "CREATE DATABASE bench10k"
t0=$(now)
psql_q -d bench10k -c "
DO \$\$
BEGIN
  FOR i IN 1..$TABLES LOOP
    EXECUTE format('CREATE TABLE public.t%s (id bigint PRIMARY KEY, parent bigint, label text, created timestamptz DEFAULT now())', i);
    EXECUTE format('CREATE INDEX t%s_label_idx ON public.t%s (label)', i, i);
    IF i > 1 THEN
      EXECUTE format('ALTER TABLE public.t%s ADD CONSTRAINT t%s_parent_fk FOREIGN KEY (parent) REFERENCES public.t%s (id)', i, i, i - 1);
    END IF;
  END LOOP;
END
\$\$"
T_LOAD=$(python3 -c "print('%.1f' % ($(now)-$t0))")
psql_q -d bench10k -c "VACUUM ANALYZE pg_catalog.pg_class" -c "VACUUM ANALYZE pg_catalog.pg_depend"

URI="postgres://postgres@127.0.0.1:$PORT/bench10k"
T_PGF=(); T_DUMP=(); LINES=0
for _ in $(seq "$RUNS"); do
  t0=$(now)
  "$PGFERRY" schema -s "$URI" -o /dev/null
  T_PGF+=("$(python3 -c "print($(now)-$t0)")")
  t0=$(now)
  "$PGBIN/pg_dump" -s -d bench10k -f "$WORK/dump.sql"
  T_DUMP+=("$(python3 -c "print($(now)-$t0)")")
done
"$PGFERRY" schema -s "$URI" -o "$WORK/pgferry.sql"
LINES=$(grep -c ';$' "$WORK/pgferry.sql" || true)
PGF=$(median "${T_PGF[@]}")
DUMP=$(median "${T_DUMP[@]}")
VERDICT=$(python3 -c "print('pass' if $PGF < 10 else 'FAIL')")

echo "# pgferry schema on $TABLES tables (PK + index + FK each) — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), median of $RUNS runs; setup took ${T_LOAD} s"
echo
echo "| tables | statements | pgferry schema | pg_dump -s | pgferry/pg_dump | < 10 s |"
echo "|---|---|---|---|---|---|"
echo "| $TABLES | $LINES | ${PGF} s | ${DUMP} s | $(python3 -c "print('%.2f' % ($PGF/$DUMP))") | $VERDICT |"
