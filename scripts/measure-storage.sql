-- name: create_probe
-- Creates the scratch hypertable storage_probe_ticks, shaped and chunked like ticks.
DROP TABLE IF EXISTS storage_probe_ticks;
CREATE TABLE storage_probe_ticks (LIKE ticks INCLUDING ALL);
SELECT create_hypertable('storage_probe_ticks', by_range('time', INTERVAL '1 day'));

-- name: insert_hour
-- Writes the hour from %(start)s of minute ticks for %(pairs)s pairs: each walks from its
-- own level (1e-2 to 1e4) in random steps of up to 0.05 percent.
INSERT INTO storage_probe_ticks (time, market_id, price, exchange_time)
SELECT %(start)s::timestamptz + minute * INTERVAL '1 minute', pair,
       level * exp(sum(step) OVER (PARTITION BY pair ORDER BY minute)),
       %(start)s::timestamptz + minute * INTERVAL '1 minute' - INTERVAL '150 milliseconds'
FROM generate_series(1, %(pairs)s) AS pair,
     LATERAL (SELECT 10 ^ (6 * random() - 2) + 0 * pair AS level) AS l,
     generate_series(0, 59) AS minute,
     LATERAL (SELECT 0.001 * (random() - 0.5) + 0 * minute AS step) AS s;

-- name: hour_start
-- The start of the hour %(hours)s hours before the current one: (start).
SELECT date_trunc('hour', now()) - %(hours)s * INTERVAL '1 hour' AS start;

-- name: raw_size
-- The probe's bytes on disk: (all, table), all = heap + indexes + TOAST.
SELECT sum(table_bytes + index_bytes + coalesce(toast_bytes, 0))::bigint AS all_bytes,
       sum(table_bytes + coalesce(toast_bytes, 0))::bigint AS table_bytes
FROM chunks_detailed_size('storage_probe_ticks');

-- name: compress_probe
-- Compresses every chunk of the probe as ticks is compressed (segment by market, order by time).
ALTER TABLE storage_probe_ticks SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'market_id',
    timescaledb.compress_orderby = 'time'
);
SELECT compress_chunk(c) FROM show_chunks('storage_probe_ticks') AS c;

-- name: compressed_size
-- The probe's bytes after compression: (all, table), all = heap + indexes + TOAST.
SELECT sum(after_compression_total_bytes)::bigint AS all_bytes,
       sum(after_compression_table_bytes + coalesce(after_compression_toast_bytes, 0))::bigint
           AS table_bytes
FROM chunk_compression_stats('storage_probe_ticks');

-- name: license
-- The TimescaleDB edition's license: (license).
SELECT current_setting('timescaledb.license', true) AS license;

-- name: drop_probe
-- Drops the scratch hypertable.
DROP TABLE IF EXISTS storage_probe_ticks;
