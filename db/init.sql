-- Bootstrap, run once as a superuser before the first `python -m datatracker migrate`: at the
-- database's first start in Docker (docker-entrypoint-initdb.d), by hand elsewhere:
--   psql -v ON_ERROR_STOP=1 -d datatracker -f db/init.sql
-- It creates what only a superuser may: the TimescaleDB extension and the group roles the
-- login roles are granted into (db/create-users.sh). The schema itself is versioned: the
-- numbered migrations in datatracker/migrations/, applied by `python -m datatracker migrate`.
-- Idempotent: applying it again changes nothing.

CREATE EXTENSION IF NOT EXISTS timescaledb;

-- tracker_writer: what the collector may do (insert ticks, markets and run records, refresh
-- the candles and the ranking). tracker_reader: SELECT only (the API and Grafana).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tracker_reader') THEN
        CREATE ROLE tracker_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tracker_writer') THEN
        CREATE ROLE tracker_writer NOLOGIN;
    END IF;
END
$$;
