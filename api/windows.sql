-- The API's windows of prices (api/windows.py). Instants travel as microseconds since the
-- Unix epoch (int8), exact and compact: `extract` returns numeric, so nothing is rounded.

-- name: price_window
-- A market as a user names it and its ticks from %(since)s on (those stamped ahead of now
-- too), oldest first: (market_id, exchange, symbol, times, prices), times in µs since the
-- epoch; empty arrays when it has none; no row for an unknown market. The ticks are read
-- from the primary key alone, which carries the price.
SELECT m.id, m.exchange, m.symbol,
       coalesce(w.times, '{}') AS times, coalesce(w.prices, '{}') AS prices
FROM markets AS m
CROSS JOIN LATERAL (
    SELECT array_agg((extract(epoch FROM time) * 1000000)::int8 ORDER BY time) AS times,
           array_agg(price ORDER BY time) AS prices
    FROM ticks
    WHERE market_id = m.id AND time >= %(since)s
) AS w
WHERE m.exchange = %(exchange)s AND m.symbol = %(symbol)s;

-- name: ticks_between
-- Every market's ticks stamped in [%(start)s, %(end)s], as a write announced them, by
-- market: (market_id, times, prices), oldest first, each column the values' binary forms end
-- to end, 8 bytes each, big-endian (times as timestamptz_send gives them, µs since
-- 2000-01-01; prices as float8send), which Python reads into arrays at C speed
-- (api/windows.py: columns). Read through a server-side cursor: a span may be hours of every
-- pair.
SELECT market_id,
       string_agg(timestamptz_send(time), '' ORDER BY time) AS times,
       string_agg(float8send(price), '' ORDER BY time) AS prices
FROM ticks
WHERE time >= %(start)s AND time <= %(end)s
GROUP BY market_id
ORDER BY market_id;

-- name: windows_of
-- The windows of the markets whose ids are in %(ids)s or above %(above)s, by id: their ticks
-- from %(since)s on, as ticks_between gives them (market_id, exchange, symbol, times,
-- prices); empty columns for a market with none. One read of the bulk load (api/windows.py).
-- Each market's ticks are read in order from the primary key alone, which carries the price,
-- and joined in that order (an ORDER BY inside the aggregates would sort them again: twice as
-- slow; the load checks the order).
SELECT m.id, m.exchange, m.symbol, coalesce(w.times, '') AS times, coalesce(w.prices, '') AS prices
FROM markets AS m
CROSS JOIN LATERAL (
    SELECT string_agg(timestamptz_send(t.time), '') AS times,
           string_agg(float8send(t.price), '') AS prices
    FROM (
        SELECT time, price FROM ticks
        WHERE market_id = m.id AND time >= %(since)s
        ORDER BY time
    ) AS t
) AS w
WHERE m.id = ANY(%(ids)s) OR m.id > %(above)s
ORDER BY m.id;

-- name: chunk_ranges
-- The span of each chunk of ticks, in µs since the epoch: (start, end), end exclusive. Read
-- from TimescaleDB's catalog, as ticks_storage() is; when it cannot be read, a chunk dropped
-- drops every window, to be loaded again.
SELECT s.range_start, s.range_end
FROM _timescaledb_catalog.chunk AS c
JOIN _timescaledb_catalog.hypertable AS h ON h.id = c.hypertable_id
JOIN _timescaledb_catalog.chunk_constraint AS cc ON cc.chunk_id = c.id
JOIN _timescaledb_catalog.dimension_slice AS s ON s.id = cc.dimension_slice_id
WHERE h.schema_name = 'public' AND h.table_name = 'ticks';

-- name: sync_snapshot
-- Which transactions have completed, as the listener's next statement sees them: a
-- pg_snapshot as text, 'xmin:xmax:xip,…' (api/freshness.py).
SELECT pg_current_snapshot()::text;

-- name: sync_notify
-- The same, then a notification queued behind every commit made so far: answered only after
-- the listener's server process has sent every announcement queued before it
-- (api/freshness.py). Takes a transaction id, so it runs only when a commit came since.
SELECT pg_current_snapshot()::text, pg_current_xact_id()::text,
       pg_notify('datatracker_api_sync', '');

-- name: markets
-- Every market's id and name: (market_id, exchange, symbol).
SELECT id, exchange, symbol FROM markets;

-- name: ranks
-- Every ranked market's place in the stored ranking by cv: (market_id, rank).
SELECT market_id, rank_cv FROM rankings;

-- name: ranked
-- How many pairs the stored ranking ranks and the end of its 24-hour window in µs since the
-- epoch: (ranked, as_of), as_of NULL before the first refresh.
SELECT coalesce((SELECT ranked FROM rankings_window), 0) AS ranked,
       (SELECT (extract(epoch FROM window_end) * 1000000)::int8 FROM rankings_window) AS as_of;

-- name: raw_retention
-- How long ticks are kept, in µs: (raw_retention).
SELECT (extract(epoch FROM raw_retention) * 1000000)::int8 FROM storage_settings;
