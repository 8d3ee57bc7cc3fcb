-- Bootstrap, run once as a superuser before the first `python -m datatracker migrate`: at the
-- database's first start in Docker (docker-entrypoint-initdb.d), by hand elsewhere:
--   psql -v ON_ERROR_STOP=1 -d datatracker -f db/init.sql
-- It creates what only a superuser may: the TimescaleDB extension and the group roles the
-- login roles are granted into (db/create-users.sh). The schema itself is versioned: the
-- numbered migrations in datatracker/migrations/, applied by `python -m datatracker migrate`.
-- Idempotent: applying it again changes nothing; to bring an existing database up to date
-- with it (new revocations), run it again as a superuser.

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

-- What no service needs and only a superuser may take from PUBLIC (the functions belong to
-- the system): large objects (they outlive the session and count against the disk; a reader
-- could create them) and advisory locks (any role could take the key `migrate` waits for,
-- datatracker/schema.py, and stall every migration). REVOKE on a function is per database:
-- run this script in the project's database. What PostgreSQL does not let anyone take away
-- (a role's own password, NOTIFY, SET): SECURITY.md. The owner of the database keeps the
-- advisory locks `migrate` takes; superusers keep everything.
REVOKE EXECUTE ON FUNCTION
    lo_creat(integer), lo_create(oid), lo_from_bytea(oid, bytea), lo_import(text),
    lo_import(text, oid), lo_put(oid, bigint, bytea), lowrite(integer, bytea),
    lo_truncate(integer, integer), lo_truncate64(integer, bigint), lo_unlink(oid)
FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    pg_advisory_lock(bigint), pg_advisory_lock(integer, integer),
    pg_advisory_lock_shared(bigint), pg_advisory_lock_shared(integer, integer),
    pg_try_advisory_lock(bigint), pg_try_advisory_lock(integer, integer),
    pg_try_advisory_lock_shared(bigint), pg_try_advisory_lock_shared(integer, integer),
    pg_advisory_xact_lock(bigint), pg_advisory_xact_lock(integer, integer),
    pg_advisory_xact_lock_shared(bigint), pg_advisory_xact_lock_shared(integer, integer),
    pg_try_advisory_xact_lock(bigint), pg_try_advisory_xact_lock(integer, integer),
    pg_try_advisory_xact_lock_shared(bigint), pg_try_advisory_xact_lock_shared(integer, integer)
FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION pg_advisory_lock(bigint) TO %I',
                   (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database()));
END
$$;
