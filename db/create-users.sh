#!/usr/bin/env bash
# Runs once, at the database's first start in Docker (after 10-init.sql): creates
# one login role per service, each in the group role that gives it what it needs.
# Passwords come from the environment (.env); nothing secret is stored here.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v collector_password="$COLLECTOR_DB_PASSWORD" \
  -v api_password="$API_DB_PASSWORD" \
  -v grafana_password="$GRAFANA_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE collector LOGIN PASSWORD %L IN ROLE tracker_writer', :'collector_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'collector') \gexec
SELECT format('CREATE ROLE api LOGIN PASSWORD %L IN ROLE tracker_reader', :'api_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'api') \gexec
SELECT format('CREATE ROLE grafana LOGIN PASSWORD %L IN ROLE tracker_reader', :'grafana_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana') \gexec
-- Belt and braces for the readers: read-only sessions, and no query runs away.
ALTER ROLE api SET default_transaction_read_only = on;
ALTER ROLE api SET statement_timeout = '10s';
ALTER ROLE grafana SET default_transaction_read_only = on;
ALTER ROLE grafana SET statement_timeout = '30s';
SQL
