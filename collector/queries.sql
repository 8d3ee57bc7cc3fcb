-- name: register_markets
-- Adds markets not seen before and widens first/last seen of known ones.
-- Returns (id, exchange, symbol) of every market given.
INSERT INTO markets AS m (exchange, symbol, base, quote, first_seen, last_seen)
SELECT *
FROM unnest(
    %(exchange)s::text[], %(symbol)s::text[], %(base)s::text[], %(quote)s::text[],
    %(first_seen)s::timestamptz[], %(last_seen)s::timestamptz[]
)
ON CONFLICT (exchange, symbol) DO UPDATE
    SET first_seen = least(m.first_seen, excluded.first_seen),
        last_seen = greatest(m.last_seen, excluded.last_seen)
RETURNING id, exchange, symbol;

-- name: touch_markets
-- Moves last_seen of the given markets forward to %(seen)s.
UPDATE markets
SET last_seen = %(seen)s
WHERE id = ANY(%(ids)s::integer[]) AND last_seen < %(seen)s;

-- name: copy_ticks
-- Writes ticks none of which is stored yet, as binary COPY rows (time, market_id, price,
-- exchange_time); fails whole on the first repeat. COPY takes TimescaleDB's batched insert
-- path: a 50,000-tick cycle is written in about 60 % of insert_ticks' time.
COPY ticks (time, market_id, price, exchange_time) FROM STDIN (FORMAT BINARY);

-- name: name_span
-- Names the span of the ticks this transaction writes, '<first µs>/<last µs>' since the Unix
-- epoch: the trigger on ticks announces it, and the API reads back only those (migration 0005).
SELECT set_config('datatracker.ticks_span', %(span)s, true);

-- name: insert_ticks
-- Writes ticks none of which is stored yet; fails whole on the first repeat. For servers
-- that cannot COPY FROM STDIN (`TickWriter(copy=False)`).
-- Times come as Unix epoch seconds: psycopg adapts a list of floats several
-- times faster than a list of datetimes, and a cycle has tens of thousands.
INSERT INTO ticks (time, market_id, price, exchange_time)
SELECT to_timestamp(time), market_id, price, to_timestamp(exchange_time)
FROM unnest(
    %(time)b::float8[], %(market_id)b::integer[], %(price)b::float8[],
    %(exchange_time)b::float8[]
) AS t (time, market_id, price, exchange_time);

-- name: insert_new_ticks
-- Writes the ticks not stored yet, skipping repeats. Returns the market_id of each tick written.
INSERT INTO ticks (time, market_id, price, exchange_time)
SELECT to_timestamp(time), market_id, price, to_timestamp(exchange_time)
FROM unnest(
    %(time)b::float8[], %(market_id)b::integer[], %(price)b::float8[],
    %(exchange_time)b::float8[]
) AS t (time, market_id, price, exchange_time)
ON CONFLICT DO NOTHING
RETURNING market_id;

-- name: stored_per_minute
-- How many ticks of the markets %(ids)s are stored at each instant from %(first)s to %(last)s
-- (both inclusive): (time, ticks), instants with none left out. Reads the time index.
SELECT time, count(*) AS ticks
FROM ticks
WHERE time >= %(first)s AND time <= %(last)s AND market_id = ANY(%(ids)s::integer[])
GROUP BY time;

-- name: record_runs
-- Records each exchange's outcome of one cycle; recording the same cycle again keeps the first.
INSERT INTO collector_runs (time, exchange, ok, fetched, written, dropped, fetch_seconds, error)
SELECT %(time)s, *
FROM unnest(
    %(exchange)s::text[], %(ok)s::boolean[], %(fetched)s::integer[], %(written)s::integer[],
    %(dropped)s::integer[], %(fetch_seconds)s::float8[], %(error)s::text[]
)
ON CONFLICT DO NOTHING;

-- name: newest_tick
-- The time of the newest tick before %(before)s: (time), NULL when there is none.
SELECT max(time) AS time FROM ticks WHERE time < %(before)s;

-- name: latest_prices
-- The newest price of every pair seen in the last week: where the simulated walk resumes
-- after a restart. One backward primary-key lookup per market, not a scan of a week of ticks.
SELECT m.exchange, m.symbol, latest.price
FROM markets AS m
CROSS JOIN LATERAL (
    SELECT price FROM ticks
    WHERE market_id = m.id AND time > now() - interval '7 days'
    ORDER BY time DESC
    LIMIT 1
) AS latest;

-- name: roll_up_candles_5m
-- Apache mode: recomputes from the raw ticks the 5-minute candles of every bucket from the one
-- holding %(since)s to the one ending at %(until)s (a bucket boundary; far in the future for
-- all). A function with the owner's rights (migration 0006): the collector cannot write
-- candles itself, only have them computed from the ticks. Returns (candles), how many.
SELECT roll_up_candles_5m(%(since)s::timestamptz, %(until)s::timestamptz) AS candles;

-- name: roll_up_candles_1h
-- Apache mode: recomputes the hourly candles from the hour holding %(since)s to the one ending
-- at %(until)s (an hour boundary; far in the future for all) by combining their 5-minute
-- candles exactly (migration 0006). Returns (candles), how many.
SELECT roll_up_candles_1h(%(since)s::timestamptz, %(until)s::timestamptz) AS candles;

-- name: roll_up_start
-- Apache mode: where a catch-up rollup starts: (since), the newest 5-minute candle's bucket,
-- else the oldest tick's time; NULL when there are no ticks.
SELECT coalesce((SELECT max(bucket) FROM candles_5m), (SELECT min(time) FROM ticks)) AS since;

-- name: apply_retention
-- Apache mode: drops the chunks past the retention horizons the database stores (migrate
-- sets them): (dropped), how many.
SELECT apply_retention() AS dropped;

-- name: refresh_candles_5m
-- Timescale mode: materialises the whole 5-minute buckets from %(start)s to %(end)s (both
-- on bucket boundaries, at least one bucket apart: TimescaleDB refuses a smaller window).
CALL refresh_continuous_aggregate('candles_5m', %(start)s::timestamptz, %(end)s::timestamptz);

-- name: refresh_candles_1h
-- Timescale mode: materialises the whole hourly buckets from %(start)s to %(end)s (as above).
CALL refresh_continuous_aggregate('candles_1h', %(start)s::timestamptz, %(end)s::timestamptz);

-- name: refresh_rankings
-- Both modes: db/init.sql's refresh_rankings() replaces the stored ranking with the one up to
-- now(), in one transaction. Returns (ranked), how many pairs it ranks.
SELECT refresh_rankings() AS ranked;

-- name: record_set_aside
-- Records a cycle set aside (kept in the spool, not written); recording it again keeps the first.
INSERT INTO set_aside_cycles (time, set_aside_at, error, traceback, exchanges, ticks)
VALUES (%(time)s, %(set_aside_at)s, %(error)s, %(traceback)s, %(exchanges)s, %(ticks)s)
ON CONFLICT DO NOTHING;

-- name: write_horizon
-- The oldest instant a service may write ticks at, as the database refuses older ones (the
-- stored raw retention, migration 0006), ten minutes inside it so that a batch fetched and
-- written a while later is not refused as the horizon moves on: (horizon).
SELECT now() - raw_retention + INTERVAL '10 minutes' AS horizon FROM storage_settings;
