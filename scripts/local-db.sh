#!/usr/bin/env bash
# A local TimescaleDB for development and tests on Debian/Ubuntu, without Docker: a PostgreSQL
# cluster (Debian's cluster tools) on 127.0.0.1, in one of TimescaleDB's two editions.
#
#   scripts/local-db.sh start    # install what is missing, start; prints the URL last
#   scripts/local-db.sh stop | url | status | edition | major   # major: its PostgreSQL major
#   scripts/local-db.sh remove   # drop the cluster: its databases and all its configuration
#
# LOCAL_DB_EDITION picks the edition (each its own cluster and port):
#   apache     (default) cluster `datatracker` on 5433 with `timescaledb.license = 'apache'`:
#              hypertables, time_bucket, drop_chunks; no continuous aggregates, policies or
#              compression. What Debian/Ubuntu users without Docker get.
#   timescale  cluster `datatracker_tsl` on 5434 with the Timescale-License features, as the
#              official Docker image runs them. Needs a TimescaleDB build that has them
#              (timescaledb-tsl-*.so); this script does not build one.
#   timescale-pgN  cluster `datatracker_pgN` on 5435: the timescale edition on PostgreSQL N
#              (e.g. timescale-pg18), the major compose ships. Needs PostgreSQL N
#              (scripts/build-postgresql.sh) and TimescaleDB built for it; this script builds
#              neither.
# Each cluster runs on one PostgreSQL major, picked per cluster, never "the newest installed":
# LOCAL_DB_PG_MAJOR if set; else N for timescale-pgN; else the major the cluster already has;
# else the oldest major under /usr/lib/postgresql (the distribution's own; newer majors there
# come from scripts/build-postgresql.sh). LOCAL_DB_PORT overrides the port, LOCAL_DB_CLUSTER
# the cluster's name. Progress goes to stderr; stdout carries only the URL, so
# `url=$(scripts/local-db.sh start)`. The role `datatracker` is a superuser: it sets up
# databases and roles; the services log in as their own roles (db/create-users.sh).
set -euo pipefail

edition=${LOCAL_DB_EDITION:-apache}
case $edition in
  apache) cluster=datatracker; default_port=5433 ;;
  timescale) cluster=datatracker_tsl; default_port=5434 ;;
  timescale-pg[1-9][0-9]) cluster=datatracker_pg${edition#timescale-pg}; default_port=5435 ;;
  *) echo "LOCAL_DB_EDITION must be apache, timescale or timescale-pgN, not '$edition'" >&2; exit 2 ;;
esac
license=${edition%%-*}  # timescaledb.license: apache or timescale
cluster=${LOCAL_DB_CLUSTER:-$cluster}
port=${LOCAL_DB_PORT:-$default_port}
url="postgresql://datatracker:datatracker@127.0.0.1:$port/datatracker"
here=$(cd "$(dirname "$0")" && pwd)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# From /: postgres may not enter the directory this runs in (a checkout under /root), and psql
# would say so.
as_postgres() { (cd / && if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi); }
installed_majors() { find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null | cut -d/ -f5 | sort -n; }
pg_major() {
  if [ -n "${LOCAL_DB_PG_MAJOR:-}" ]; then echo "$LOCAL_DB_PG_MAJOR"
  elif [ "$edition" != "$license" ]; then echo "${edition#timescale-pg}"
  else
    local existing; existing=$(pg_lsclusters -h 2>/dev/null | awk -v c="$cluster" '$2 == c {print $1}' | head -1)
    if [ -n "$existing" ]; then echo "$existing"; else installed_majors | head -1; fi
  fi
}
is_running() { pg_lsclusters -h "$(pg_major)" "$cluster" 2>/dev/null | grep -qw online; }
has_tsl() { compgen -G "$(/usr/lib/postgresql/"$(pg_major)"/bin/pg_config --pkglibdir)/timescaledb-tsl-*.so" >/dev/null; }

install() {
  if [ "$edition" != "$license" ]; then
    [ -x "/usr/lib/postgresql/$(pg_major)/bin/postgres" ] || {
      echo "the $edition edition needs PostgreSQL $(pg_major) in /usr/lib/postgresql/$(pg_major)" \
        "(scripts/build-postgresql.sh builds it)" >&2
      exit 1
    }
    has_tsl || {
      echo "the $edition edition needs TimescaleDB with its Timescale-License features built" \
        "for PostgreSQL $(pg_major) (timescaledb-tsl-*.so)" >&2
      exit 1
    }
    return
  fi
  if [ -z "$(installed_majors)" ]; then
    echo "installing PostgreSQL (apt-get install postgresql)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade postgresql
  fi
  as_root env PG_MAJOR="$(pg_major)" "$here/install-timescaledb.sh"
  if [ "$edition" = timescale ] && ! has_tsl; then
    echo "the timescale edition needs TimescaleDB built with its Timescale-License features" \
      "(timescaledb-tsl-*.so); this machine has the Apache-2 build only" >&2
    exit 1
  fi
}

create_cluster() {
  local major; major=$(pg_major)
  pg_lsclusters -h "$major" "$cluster" >/dev/null 2>&1 && return
  echo "creating PostgreSQL cluster $cluster on 127.0.0.1:$port ($edition edition)" >&2
  # Its initdb transcript and its table of the new cluster (shown `down`, in red) are noise here.
  as_root pg_createcluster "$major" "$cluster" --port "$port" >/dev/null
  # A conf.d file rather than `pg_createcluster -o`, which would write 127.0.0.1 unquoted.
  as_root tee "/etc/postgresql/$major/$cluster/conf.d/datatracker.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
timescaledb.license = '$license'
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

# pg_dropcluster deletes the data directory and the configuration files it wrote itself, not
# the conf.d file create_cluster added: that goes too, and the directories left empty.
remove() {
  local major; major=$(pg_major)
  if [ -z "$major" ] || ! pg_lsclusters -h "$major" "$cluster" >/dev/null 2>&1; then
    echo "no cluster $cluster: nothing to remove" >&2
    return
  fi
  local config=/etc/postgresql/$major/$cluster _version _name cluster_port _status _owner data
  read -r _version _name cluster_port _status _owner data _ < <(pg_lsclusters -h "$major" "$cluster")
  echo "removing PostgreSQL cluster $cluster (port $cluster_port): its databases" \
    "($data) and its configuration ($config); PostgreSQL and TimescaleDB stay installed" >&2
  as_root pg_dropcluster --stop "$major" "$cluster"
  as_root rm -f "$config/conf.d/datatracker.conf"
  as_root rmdir --ignore-fail-on-non-empty "$config/conf.d" "$config"
}

case ${1:-} in
  start) start >&2; echo "$url" ;;
  stop) if is_running; then as_root pg_ctlcluster "$(pg_major)" "$cluster" stop; fi ;;
  url) echo "$url" ;;
  status) if is_running; then echo "running: $url ($edition edition, PostgreSQL $(pg_major))"; else echo "stopped"; exit 3; fi ;;
  edition) echo "$edition" ;;
  major) pg_major ;;
  remove) remove ;;
  *) echo "usage: $0 start|stop|url|status|edition|major|remove" >&2; exit 2 ;;
esac
