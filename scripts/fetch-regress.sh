#!/usr/bin/env bash
# Fetches PostgreSQL's own regression suite for tests/regression_db.rs and builds what it needs
# (pg_regress, regress.so, the spi modules autoinc.so and refint.so), cached outside the
# repository; prints where it is:
#
#   export PGFERRY_REGRESS_DIR=/var/cache/pgferry-regress/15.18-0+deb12u1/src/test/regress
#
# Use:   eval "$(scripts/fetch-regress.sh)"
#        scripts/fetch-regress.sh --cached   only report a build already cached (exit 1 if none)
#
# Which sources: the Debian source package of the installed server (postgresql-MAJOR at the
# version dpkg has installed), from deb.debian.org's main pool through a private apt
# configuration (no change to the system's apt sources). When the archive no longer has that
# version's source (a security update: the security pool answers 404 here), the newest source
# of the same major is used instead, and said. Nothing is installed: the tree is configured minimally and
# only src/test/regress (with src/port, src/common and contrib/spi) is built, against the
# tree's own headers, so the installed server and its running clusters are never touched.
# The SQL is test input read at test time; none of it is part of pgferry.
#
# Cache: ${PGFERRY_REGRESS_CACHE:-$HOME/.cache/pgferry-regress}; as root
# /var/cache/pgferry-regress (the server runs as `postgres`, which must read regress.so).
# A finished build (marked by .built) is reused. Progress goes to stderr, the export to stdout.
set -euo pipefail

cached_only=no
case "${1:-}" in
  --cached) cached_only=yes ;;
  "") ;;
  *)
    echo "usage: $0 [--cached]" >&2
    exit 2
    ;;
esac

say() { echo "fetch-regress: $*" >&2; }
die() {
  say "$*"
  exit 1
}

if [ "$(id -u)" = 0 ]; then
  cache="${PGFERRY_REGRESS_CACHE:-/var/cache/pgferry-regress}"
else
  cache="${PGFERRY_REGRESS_CACHE:-$HOME/.cache/pgferry-regress}"
fi

# The installed server's major and Debian version (the source must match the server: the
# regression SQL of another minor can differ and regress.so carries the major's magic block).
bindir="${PGFERRY_PG_BIN:-}"
if [ -z "$bindir" ]; then
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -rn | head -1 || true)"
fi
[ -n "$bindir" ] && [ -x "$bindir/postgres" ] || die "no PostgreSQL server found (PGFERRY_PG_BIN or /usr/lib/postgresql/*/bin)"
major="$("$bindir/postgres" --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')"
command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: only Debian's source packages are supported"
version="$(dpkg-query -W -f='${Version}' "postgresql-$major" 2>/dev/null || true)"
[ -n "$version" ] || die "postgresql-$major is not installed as a Debian package"

dir="$cache/$version"
upstream="${version%%-*}"
# The source actually used (another minor of the same major when the archive no longer has
# the installed one's source), recorded at download time.
[ -f "$dir/.source-upstream" ] && upstream="$(cat "$dir/.source-upstream")"
tree="$dir/postgresql-$upstream"
regress="$tree/src/test/regress"
if [ -f "$dir/.built" ]; then
  echo "export PGFERRY_REGRESS_DIR=$regress"
  exit 0
fi
[ "$cached_only" = no ] || die "no build of the regression suite for postgresql-$major $version in $cache"

mkdir -p "$dir"
chmod a+rx "$cache" "$dir"

orig="$dir/postgresql-${major}_${upstream}.orig.tar.bz2"
if [ ! -f "$orig" ]; then
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found"
  apt="$dir/apt"
  mkdir -p "$apt/parts" "$apt/lists/partial"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || die "$keyring not found"
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  [ -n "$codename" ] || die "cannot tell the Debian release (VERSION_CODENAME in /etc/os-release)"
  cat >"$apt/parts/src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: $keyring
EOF
  opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt/parts"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Sandbox::User=root")
  mkdir -p "$apt/cache/archives/partial"
  say "fetching the source index of Debian $codename (private apt configuration in $apt)"
  apt-get "${opts[@]}" -qq update >&2 || die "apt-get update of the source index failed"
  say "downloading the source package postgresql-$major=$version"
  if ! (cd "$dir" && apt-get "${opts[@]}" -qq source --download-only "postgresql-$major=$version" >&2); then
    # A security update's source may be gone from (or not yet in) the archive the machine
    # reaches. The suite of another minor of the same major serves as well: regress.so needs
    # only the major, and the regression SQL is test input whose results are not compared.
    other="$(apt-cache "${opts[@]}" showsrc "postgresql-$major" 2>/dev/null \
      | awk '/^Version:/ {print $2}' | sort -V | tail -1)"
    [ -n "$other" ] && [ "$other" != "$version" ] \
      || die "apt-get source postgresql-$major=$version failed (and no other version of the source package is available)"
    say "the source of $version is not available; using postgresql-$major $other (same major)"
    (cd "$dir" && apt-get "${opts[@]}" -qq source --download-only "postgresql-$major=$other" >&2) \
      || die "apt-get source postgresql-$major=$other failed"
    upstream="${other%%-*}"
    tree="$dir/postgresql-$upstream"
    regress="$tree/src/test/regress"
    orig="$dir/postgresql-${major}_${upstream}.orig.tar.bz2"
  fi
  [ -f "$orig" ] || die "the source package has no $(basename "$orig")"
  echo "$upstream" >"$dir/.source-upstream"
fi

if [ ! -f "$tree/configure" ]; then
  say "unpacking $(basename "$orig")"
  rm -rf "$tree"
  tar -C "$dir" -xjf "$orig"
fi

if [ ! -f "$tree/src/Makefile.global" ]; then
  say "configuring the source tree (minimal: only the regression test programs are built)"
  (cd "$tree" && ./configure --without-readline --without-zlib --without-icu --without-llvm \
    --without-openssl --without-ldap --without-gssapi --without-libxml --without-lz4 \
    --without-zstd --prefix="$dir/unused" >"$dir/configure.log" 2>&1) \
    || die "configure failed (see $dir/configure.log)"
fi

jobs="$(nproc 2>/dev/null || echo 1)"
say "building pg_regress, regress.so, autoinc.so and refint.so"
make -C "$regress" -j"$jobs" -s all >"$dir/make.log" 2>&1 || die "make failed (see $dir/make.log)"
[ -x "$regress/pg_regress" ] && [ -f "$regress/regress.so" ] || die "the build left no pg_regress or regress.so"
# pg_regress loads these from --dlpath: one folder holding all three.
cp "$tree/contrib/spi/autoinc.so" "$tree/contrib/spi/refint.so" "$regress/"
# The server (the postgres OS user) reads regress.so and the input files, and writes results.
chmod -R a+rX "$dir"
touch "$dir/.built"
echo "export PGFERRY_REGRESS_DIR=$regress"
