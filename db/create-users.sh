#!/usr/bin/env bash
# Creates one login role per service, each in the group role that gives it what it needs
# (db/init.sql creates the groups). Runs at the database's first start in Docker, after
# init.sql; elsewhere by hand, as a superuser, with the same variables. Passwords come from
# the environment; nothing secret is stored here. Idempotent: an existing role keeps its
# password and is brought back to these settings.
#
#   POSTGRES_USER, POSTGRES_DB: who runs it and where (psql's PGHOST/PGPORT/PGPASSWORD apply)
#   COLLECTOR_DB_PASSWORD, API_DB_PASSWORD, GRAFANA_DB_PASSWORD
set -euo pipefail

psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v collector_password="$COLLECTOR_DB_PASSWORD" \
  -v api_password="$API_DB_PASSWORD" \
  -v grafana_password="$GRAFANA_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE collector LOGIN PASSWORD %L IN ROLE tracker_writer', :'collector_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'collector') \gexec
SELECT format('CREATE ROLE api LOGIN PASSWORD %L IN ROLE tracker_reader', :'api_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'api') \gexec
SELECT format('CREATE ROLE grafana LOGIN PASSWORD %L IN ROLE tracker_reader', :'grafana_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana') \gexec
-- Conveniences for the readers, not their safety: PostgreSQL lets every role change its own
-- defaults (ALTER ROLE … SET), so what keeps them read-only is that they hold SELECT alone.
ALTER ROLE api SET default_transaction_read_only = on;
ALTER ROLE api SET statement_timeout = '10s';
ALTER ROLE grafana SET default_transaction_read_only = on;
ALTER ROLE grafana SET statement_timeout = '30s';
SQL
