-- Migration 0004: the API's response cache (api/cache.py) sees every change that the project
-- makes to what it serves, not only writes to ticks and the stored ranking.
--
-- * Renaming or deleting a market changes which pair a name finds: announced like a write
--   (`markets` as payload, which makes the API drop everything it keeps). The collector's
--   own updates of markets (first_seen, last_seen) change neither name and stay silent.
-- * Dropping or compressing chunks of ticks (drop_chunks, compress_chunk, the retention and
--   compression policies, apply_retention()) fires no trigger, and a policy job offers no
--   hook to announce it. ticks_storage() says which chunks ticks has and in what state; the
--   API's listener reads it on every check of its connection (twice a second) and drops
--   what it keeps when it changes. apply_retention() also announces its drops (0002).
-- Writes straight into TimescaleDB's internal chunk tables (_timescaledb_internal.*) bypass
-- both and are out of scope.

CREATE OR REPLACE TRIGGER markets_changed
    AFTER UPDATE OF exchange, symbol OR DELETE OR TRUNCATE ON markets
    FOR EACH STATEMENT EXECUTE FUNCTION announce_change('markets');

-- One line naming each chunk of ticks with its status (compressed, partially, frozen): any
-- drop, new chunk, compression or decompression changes it. Reads TimescaleDB's catalog,
-- which every role may read (a few rows, about 0.1 ms). Should a TimescaleDB release change
-- the catalog, the function fails, and the API keeps nothing in memory rather than risk
-- serving a change it cannot see.
CREATE OR REPLACE FUNCTION ticks_storage()
RETURNS text
LANGUAGE sql STABLE AS $$
SELECT coalesce(string_agg(c.id || ':' || c.status || ':' || coalesce(c.compressed_chunk_id, 0),
                           ',' ORDER BY c.id), '')
FROM _timescaledb_catalog.chunk AS c
JOIN _timescaledb_catalog.hypertable AS h ON h.id = c.hypertable_id
WHERE h.schema_name = 'public' AND h.table_name = 'ticks'
$$;
COMMENT ON FUNCTION ticks_storage() IS
    'The chunks of ticks and their compression status, as text: changes with any drop or compression.';
GRANT EXECUTE ON FUNCTION ticks_storage() TO tracker_reader;
