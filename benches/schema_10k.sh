#!/usr/bin/env bash
# The schema engine's speed goal (`pgferry schema` in at most half of `pg_dump -s`'s time,
# issue 15) on many tables: a throwaway cluster gets
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
source benches/lib.sh
bench_tools
bench_single schema10k "-c max_locks_per_transaction=1024"
PORT=$SP
export PGPORT=$PORT
psql_q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

psql_q -d postgres -c "CREATE DATABASE bench10k"
t0=$(now)
# In batches of 1,000 tables, one transaction each (the lock table stays small at 100,000).
for start in $(seq 1 1000 "$TABLES"); do
  end=$((start + 999 < TABLES ? start + 999 : TABLES))
  psql_q -d bench10k -c "
DO \$\$
BEGIN
  FOR i IN $start..$end LOOP
    EXECUTE format('CREATE TABLE public.t%s (id bigint PRIMARY KEY, parent bigint, label text, created timestamptz DEFAULT now())', i);
    EXECUTE format('CREATE INDEX t%s_label_idx ON public.t%s (label)', i, i);
    IF i > 1 THEN
      EXECUTE format('ALTER TABLE public.t%s ADD CONSTRAINT t%s_parent_fk FOREIGN KEY (parent) REFERENCES public.t%s (id)', i, i, i - 1);
    END IF;
  END LOOP;
END
\$\$"
done
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
RSS_KB=$(peak_rss_kb "$PGFERRY" schema -s "$URI" -o "$WORK/pgferry.sql" | tail -1)
LINES=$(grep -c ';$' "$WORK/pgferry.sql" || true)
PGF=$(median "${T_PGF[@]}")
DUMP=$(median "${T_DUMP[@]}")
VERDICT=$(python3 -c "print('pass' if $PGF <= 0.5 * $DUMP else 'MISSED')")

echo "# pgferry schema on $TABLES tables (PK + index + FK each) — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, PostgreSQL $(pg_version), median of $RUNS runs; setup took ${T_LOAD} s"
echo
echo "| tables | statements | pgferry schema | pg_dump -s | pgferry/pg_dump | pgferry peak RSS | ≤ 0.5× pg_dump |"
echo "|---|---|---|---|---|---|---|"
echo "| $TABLES | $LINES | ${PGF} s | ${DUMP} s | $(python3 -c "print('%.2f' % ($PGF/$DUMP))") | $((RSS_KB / 1024)) MB | $VERDICT |"
