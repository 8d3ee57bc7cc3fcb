#!/usr/bin/env bash
# A local TimescaleDB for development and tests on Debian/Ubuntu, without Docker:
# a PostgreSQL cluster `datatracker` (Debian's cluster tools) on 127.0.0.1.
#
#   scripts/local-db.sh start    # install what is missing, start; prints the URL last
#   scripts/local-db.sh stop | url | status
#
# Progress goes to stderr; stdout carries only the URL, so `url=$(scripts/local-db.sh start)`.
set -euo pipefail

cluster=datatracker
port=${LOCAL_DB_PORT:-5433}
url="postgresql://datatracker:datatracker@127.0.0.1:$port/datatracker"
here=$(cd "$(dirname "$0")" && pwd)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
pg_major() { find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null | cut -d/ -f5 | sort -n | tail -1; }
is_running() { pg_lsclusters -h "$(pg_major)" "$cluster" 2>/dev/null | grep -qw online; }

install() {
  if [ -z "$(pg_major)" ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  fi
  as_root env PG_MAJOR="$(pg_major)" "$here/install-timescaledb.sh"
}

create_cluster() {
  local major; major=$(pg_major)
  pg_lsclusters -h "$major" "$cluster" >/dev/null 2>&1 && return
  as_root pg_createcluster "$major" "$cluster" --port "$port"
  # A conf.d file rather than `pg_createcluster -o`, which would write 127.0.0.1 unquoted.
  as_root tee "/etc/postgresql/$major/$cluster/conf.d/datatracker.conf" >/dev/null <<'CONF'
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
CONF
}

wait_until_ready() {
  for _ in $(seq 60); do
    pg_isready -q -h 127.0.0.1 -p "$port" && return
    sleep 0.5
  done
  echo "cluster $cluster did not answer on port $port" >&2
  return 1
}

create_owner_and_database() {
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres <<'SQL'
SELECT 'CREATE ROLE datatracker LOGIN SUPERUSER PASSWORD ''datatracker'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'datatracker') \gexec
SELECT 'CREATE DATABASE datatracker OWNER datatracker'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'datatracker') \gexec
SQL
}

start() {
  install
  create_cluster
  is_running || as_root pg_ctlcluster "$(pg_major)" "$cluster" start
  wait_until_ready
  create_owner_and_database
}

case ${1:-} in
  start) start >&2; echo "$url" ;;
  stop) if is_running; then as_root pg_ctlcluster "$(pg_major)" "$cluster" stop; fi ;;
  url) echo "$url" ;;
  status) if is_running; then echo "running: $url"; else echo "stopped"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|url|status" >&2; exit 2 ;;
esac
