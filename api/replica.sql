-- The API's questions about a hot standby and its primary (api/replica.py). WAL positions
-- travel as numbers (bytes since the start of WAL): `pg_lsn - '0/0'` is numeric, exact.

-- name: primary_position
-- Where the primary's WAL ends now, as a number: (position). Asked on the primary (the
-- listener's server). The insert position, not the written one: a commit made with
-- synchronous_commit off is visible before its WAL is written, and must be waited for too.
SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn;

-- name: replayed_position
-- Whether the server is a standby, and how far it has replayed the primary's WAL, as a
-- number: (in_recovery, replayed); replayed is null on a primary.
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() - '0/0'::pg_lsn;

-- name: wal_block_size
-- The size of a WAL page in bytes (8192 unless PostgreSQL was built otherwise): (size).
SELECT current_setting('wal_block_size')::int;

-- name: replica_lag
-- How many seconds the standby's replay is behind what it has received: 0 when it has
-- replayed all of it (an idle standby is not behind), else the age of the last transaction
-- it replayed; null on a primary: (lag_seconds).
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN NULL
    WHEN pg_last_wal_receive_lsn() IS NOT NULL
         AND pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0
    ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8
END;
