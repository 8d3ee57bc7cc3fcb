#!/usr/bin/env bash
# The no-Docker quick start: a local TimescaleDB, the schema, a day of simulated
# history, then the collector and the API until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL=$(scripts/local-db.sh start)
export DATABASE_URL
export PRICE_SOURCE=${PRICE_SOURCE:-simulated}
export API_PORT=${API_PORT:-8000}

python -m datatracker initdb
python -m collector backfill --hours "${BACKFILL_HOURS:-24}"

python -m collector &
collector=$!
python -m api &
api=$!
trap 'kill "$collector" "$api" 2>/dev/null; wait' INT TERM EXIT
echo "API on http://127.0.0.1:$API_PORT, e.g. curl http://127.0.0.1:$API_PORT/prices/kraken/btcusd (Ctrl-C stops)" >&2
wait -n
