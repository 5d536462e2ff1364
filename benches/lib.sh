# Shared by the bench scripts (source it; it sets nothing off by itself): two throwaway local
# clusters tuned for speed, removed on exit, and timing helpers.
#
#   source benches/lib.sh; bench_tools                # → $PGFERRY (release build), $PGBIN
#   bench_pair NAME "-c wal_level=logical ..."   # → $WORK, $SP, $DP; psql_s, psql_d, uri_s, uri_d
#   bench_single NAME "..."                      # → $WORK, $SP; psql_s, uri_s
#   t0=$(now); ...; since "$t0"; median 1.2 1.4 1.3
#
# A script that starts processes of its own sets BENCH_ON_EXIT to a command run first on exit.

# bench_tools: $PGFERRY is the binary the caller named, or this checkout's release build
# (built now, so that a stale binary is never measured); $PGBIN the server binaries named,
# or pg_config's.
bench_tools() {
  if [ -z "${PGFERRY:-}" ]; then
    cargo build --release --quiet
    PGFERRY=$PWD/target/release/pgferry
  fi
  PGBIN=${PGBIN:-$(pg_config --bindir)}
}

# pg_version: the server's version (for the result's header line).
pg_version() { "$PGBIN/postgres" --version | awk '{print $3}'; }

# pgbench_db SCALE: a fresh source database `bench` of pgbench scale SCALE, vacuumed and
# analyzed; its size in $SIZE.
pgbench_db() {
  psql_s -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench"
  "$PGBIN/pgbench" -q -i -s "$1" -p "$SP" bench >/dev/null 2>&1
  psql_s -d bench -c "VACUUM ANALYZE"
  SIZE=$(psql_s -d bench -Atc "SELECT pg_size_pretty(pg_database_size('bench'))")
}

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
since() { python3 -c "print('%.2f' % ($(now)-$1))"; }
median() { python3 -c 'import sys,statistics; print("%.2f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

bench_cleanup() {
  [ -n "${BENCH_ON_EXIT:-}" ] && eval "$BENCH_ON_EXIT" || true
  for c in src dst; do
    [ -d "$WORK/$c" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/$c" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}

# start_cluster NAME PORT EXTRA-SETTINGS
start_cluster() {
  [ "$(id -u)" = 0 ] && chown postgres "$WORK"
  as_pg "$PGBIN/initdb" -D "$WORK/$1" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$WORK/$1" -l "$WORK/$1.log" -w -o "-p $2 -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c shared_buffers=256MB -c maintenance_work_mem=256MB -c max_wal_size=8GB -c checkpoint_timeout=30min $3" start >/dev/null
}

# bench_pair NAME EXTRA-SETTINGS: a source and a target cluster under a fresh $WORK.
bench_pair() {
  WORK=$(mktemp -d "/tmp/pgferry-$1.XXXXXX")
  chmod 755 "$WORK"
  trap bench_cleanup EXIT
  SP=$(free_port); start_cluster src "$SP" "${2:-}"
  DP=$(free_port); start_cluster dst "$DP" "${2:-}"
  export PGHOST=127.0.0.1 PGUSER=postgres PGOPTIONS="-c client_min_messages=warning"
}

# bench_single NAME EXTRA-SETTINGS: one cluster (as the source: $SP, psql_s, uri_s) under a fresh $WORK.
bench_single() {
  WORK=$(mktemp -d "/tmp/pgferry-$1.XXXXXX")
  chmod 755 "$WORK"
  trap bench_cleanup EXIT
  SP=$(free_port); start_cluster src "$SP" "${2:-}"
  export PGHOST=127.0.0.1 PGUSER=postgres PGOPTIONS="-c client_min_messages=warning"
}

# peak_rss_kb COMMAND...: runs it (stdout and stderr as they are) and prints its peak RSS in
# kB on the last line of stdout.
peak_rss_kb() {
  python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:],check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}

psql_s() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -p "$SP" "$@"; }
psql_d() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -p "$DP" "$@"; }
uri_s() { echo "postgres://postgres@127.0.0.1:$SP/$1"; }
uri_d() { echo "postgres://postgres@127.0.0.1:$DP/$1"; }
