#!/usr/bin/env bash
# README's test command (and what .ci/run runs after fmt and clippy): sets up what the tests
# need on this machine, saying what it does, then runs `cargo test --all-targets --features failpoints`
# (or only the targets the arguments name, e.g. `--test version_matrix`):
#   - PostgreSQL server binaries and, as root, the `postgres` OS user (as scripts/demo.sh);
#   - PostGIS for each Debian PostgreSQL major, when packages can be installed (the
#     extension-configuration-table tests say SKIPPED without it);
#   - the other majors (10 to 18) and PostgreSQL 18's client tools for tests/version_matrix.rs,
#     through scripts/fetch-pg.sh (cached; the tests of a missing major say SKIPPED);
#   - PostgreSQL's regression suite for tests/regression_db.rs, through
#     scripts/fetch-regress.sh (cached; without it those tests say SKIPPED).
# On a machine that has everything it only checks (a few seconds). Arguments go to cargo test
# (e.g. `scripts/test.sh --test version_matrix -- --nocapture`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

ensure_pg_server
ensure_postgres_user

for dir in /usr/lib/postgresql/*/bin; do
  [ -x "$dir/postgres" ] || continue
  major="$(basename "$(dirname "$dir")")"
  [ -f "/usr/share/postgresql/$major/extension/postgis.control" ] && continue
  apt_install "postgresql-$major-postgis-3" \
    || say "WARNING: could not install PostGIS for PostgreSQL $major: the PostGIS tests will be SKIPPED"
done

if [ ! -d "${PGFERRY_CORPUS:-../shared/corpus}/pagila" ]; then
  say "WARNING: test corpus not found at ${PGFERRY_CORPUS:-../shared/corpus}: corpus tests (pagila) will be SKIPPED"
fi

ensure_fetch_tools client
if fetched="$(scripts/fetch-pg.sh)"; then
  export_fetched "$fetched"
else
  say "WARNING: could not fetch the other PostgreSQL majors: their version-matrix tests will be SKIPPED"
fi

# PostgreSQL's own regression suite for tests/regression_db.rs (cached; built from the Debian
# source package of the installed server, which it leaves untouched).
if fetched="$(scripts/fetch-regress.sh)"; then
  export "${fetched#export }"
else
  say "WARNING: could not fetch or build PostgreSQL's regression suite: tests/regression_db.rs will be SKIPPED"
fi

# --all-targets unless the arguments (before `--`) choose targets themselves, so that
# `scripts/test.sh --test version_matrix` runs that test binary only. The failpoints feature
# compiles crash points into the test build only (src/failpoint.rs).
targets=(--all-targets)
for arg in "$@"; do
  case "$arg" in
    --) break ;;
    --lib | --bins | --bin | --bin=* | --tests | --test | --test=* | --benches | --bench \
      | --bench=* | --examples | --example | --example=* | --doc | --all-targets) targets=() ;;
  esac
done
say "running: cargo test ${targets[*]} --features failpoints $*"
exec cargo test "${targets[@]}" --features failpoints "$@"
