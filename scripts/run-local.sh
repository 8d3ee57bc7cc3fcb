#!/usr/bin/env bash
# The no-Docker quick start, set up as the deployment is: a local TimescaleDB cluster, then as
# its superuser db/init.sql, db/create-users.sh and `python -m datatracker migrate`, a day of
# simulated history, then the collector (as the role `collector`) and the API (as the role
# `api`) until Ctrl-C, which ends it with status 0; closing the terminal (SIGHUP) stops them too.
#
# The roles' passwords are their names (collector/collector, api/api, grafana/grafana): for
# this local development cluster only, which listens on 127.0.0.1 alone.
set -euo pipefail
cd "$(dirname "$0")/.."

# Ctrl-C on a terminal reaches every process of its foreground group: make's too, which would
# then end with an error of its own. Run as a job of our own (set -m), the services alone get
# the Ctrl-C, and this script (and make) end with their status.
if [ -t 0 ] && [ -z "${RUN_LOCAL_JOB:-}" ]; then
  set -m
  status=0
  RUN_LOCAL_JOB=1 "$0" "$@" || status=$?
  exit "$status"
fi

python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
say() { echo "run-local: $*" >&2; }
as_role() { sed -E "s#//[^@]*@#//$1:$1@#" <<<"$admin_url"; }

admin_url=$(scripts/local-db.sh start)
say "bootstrapping $admin_url as the superuser: db/init.sql, db/create-users.sh"
# Both are idempotent: on a second run init.sql's `IF NOT EXISTS` would add a NOTICE that the
# extension exists. Warnings and errors still show.
export PGOPTIONS="-c client_min_messages=warning"
psql -X -q -v ON_ERROR_STOP=1 -d "$admin_url" -f db/init.sql
eval "$("$python" - "$admin_url" <<'PY'
import shlex, sys
from psycopg.conninfo import conninfo_to_dict
url = conninfo_to_dict(sys.argv[1])
for name, key in [("PGHOST", "host"), ("PGPORT", "port"), ("PGPASSWORD", "password"),
                  ("POSTGRES_USER", "user"), ("POSTGRES_DB", "dbname")]:
    print(f"export {name}={shlex.quote(str(url[key]))}")
PY
)"
COLLECTOR_DB_PASSWORD=collector API_DB_PASSWORD=api GRAFANA_DB_PASSWORD=grafana db/create-users.sh
# An existing role keeps its password in create-users.sh: make sure these are the local ones.
psql -X -q -v ON_ERROR_STOP=1 -d "$admin_url" \
  -c "ALTER ROLE collector PASSWORD 'collector'" -c "ALTER ROLE api PASSWORD 'api'" \
  -c "ALTER ROLE grafana PASSWORD 'grafana'"
unset PGHOST PGPORT PGPASSWORD POSTGRES_USER POSTGRES_DB PGOPTIONS
DATABASE_URL=$admin_url "$python" -m datatracker migrate

export PRICE_SOURCE=${PRICE_SOURCE:-simulated}
export API_PORT=${API_PORT:-8000}
export SPOOL_DIR=${SPOOL_DIR:-.cache/spool}
say "writing ${BACKFILL_HOURS:-24} hours of history as the role collector"
DATABASE_URL=$(as_role collector) "$python" -m collector backfill --hours "${BACKFILL_HOURS:-24}"

DATABASE_URL=$(as_role collector) "$python" -m collector &
collector=$!
DATABASE_URL=$(as_role api) "$python" -m api &
api=$!
stop() {
  trap - INT TERM HUP
  kill -TERM "$collector" "$api" 2>/dev/null || true
  wait "$collector" "$api" 2>/dev/null || true
  say "stopped"
  exit 0
}
trap stop INT TERM HUP
say "API on http://127.0.0.1:$API_PORT, e.g. curl http://127.0.0.1:$API_PORT/prices/kraken/btcusd (Ctrl-C stops)"
say "from another shell: export DATABASE_URL=\$(scripts/local-db.sh url)   # the superuser"
# Until Ctrl-C, or until one of them ends by itself: then stop the other and say so.
status=0
wait -n "$collector" "$api" || status=$?
trap - INT TERM HUP
say "a service ended (status $status): stopping the other"
kill -TERM "$collector" "$api" 2>/dev/null || true
wait 2>/dev/null || true
exit "$status"
