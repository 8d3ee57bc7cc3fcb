-- name: create_original_prices
-- The original design's table: one row per price, written by an ORM, with only a serial key.
CREATE TABLE IF NOT EXISTS original_prices (
    id          serial PRIMARY KEY,
    exchange    text             NOT NULL,
    symbol      text             NOT NULL,
    price       double precision NOT NULL,
    updated_at  timestamptz      NOT NULL
);

-- name: truncate_original_prices
-- Empties the original table (a fresh start for a write run).
TRUNCATE original_prices RESTART IDENTITY;

-- name: insert_original_price
-- The original way's write: one price per statement (committed one by one by the caller).
INSERT INTO original_prices (exchange, symbol, price, updated_at)
VALUES (%(exchange)s, %(symbol)s, %(price)s, %(updated_at)s);

-- name: original_price_history
-- The original way's read, as the ORM issued it: one pair's last 24 hours, oldest first,
-- filtered and sorted on a table with no index on (exchange, symbol, updated_at): (price,
-- updated_at). The standard deviation was computed in Python.
SELECT price, updated_at
FROM original_prices
WHERE exchange = %(exchange)s AND symbol = %(symbol)s
  AND updated_at > now() - interval '24 hours'
ORDER BY updated_at;

-- name: seed_random
-- Seeds random() for this session, so that a pick of random markets is the same on every run.
SELECT setseed(%(seed)s);

-- name: copy_to_original_prices
-- Copies the ticks in [%(start)s, %(stop)s) into the original table, in time order.
INSERT INTO original_prices (exchange, symbol, price, updated_at)
SELECT m.exchange, m.symbol, t.price, t.time
FROM ticks AS t
JOIN markets AS m ON m.id = t.market_id
WHERE t.time >= %(start)s AND t.time < %(stop)s
ORDER BY t.time, t.market_id;

-- name: stored_range
-- The oldest and newest tick and the number of markets: (oldest, newest, markets).
SELECT min(time) AS oldest, max(time) AS newest, (SELECT count(*) FROM markets) AS markets
FROM ticks;

-- name: random_markets
-- %(count)s markets picked at random (seeded by the caller): (exchange, symbol).
SELECT exchange, symbol
FROM markets
ORDER BY random()
LIMIT %(count)s;

-- name: ticks_footprint
-- Rows and on-disk bytes of the ticks hypertable (table, indexes, TOAST): (rows, bytes).
SELECT (SELECT count(*) FROM ticks) AS rows, hypertable_size('ticks') AS bytes;

-- name: original_footprint
-- Rows and on-disk bytes of the original table with its key index: (rows, bytes).
SELECT (SELECT count(*) FROM original_prices) AS rows,
       pg_total_relation_size('original_prices') AS bytes;

-- name: database_exists
-- Whether a database of that name exists: (exists).
SELECT EXISTS (SELECT FROM pg_database WHERE datname = %(name)s) AS exists;

-- name: reset_written
-- Empties what a write benchmark writes, so every run starts from the same state.
TRUNCATE ticks, markets, original_prices RESTART IDENTITY;

-- name: reset_candles
-- Empties the candle tables of Apache mode (plain hypertables there; in timescale mode they are
-- continuous aggregates over ticks, emptied with them).
TRUNCATE candles_5m, candles_1h;

-- name: reset_ticks
-- Empties ticks and markets, so a footprint measures one scale at a time.
TRUNCATE ticks, markets RESTART IDENTITY;

-- name: guards_off
-- Takes migration 0006's guards on ticks away (the bounds trigger, the range constraints).
DROP TRIGGER IF EXISTS ticks_in_bounds ON ticks;
ALTER TABLE ticks DROP CONSTRAINT IF EXISTS ticks_price_range;
ALTER TABLE ticks DROP CONSTRAINT IF EXISTS ticks_exchange_time_range;

-- name: guards_on
-- Puts them back (whether or not they are there) as migration 0006 and configure_storage()
-- make them.
ALTER TABLE ticks DROP CONSTRAINT IF EXISTS ticks_price_range;
ALTER TABLE ticks DROP CONSTRAINT IF EXISTS ticks_exchange_time_range;
ALTER TABLE ticks ADD CONSTRAINT ticks_price_range
    CHECK (price >= 1e-12 AND price < 1e12) NOT VALID;
ALTER TABLE ticks ADD CONSTRAINT ticks_exchange_time_range
    CHECK (exchange_time >= '2009-01-01 00:00:00+00' AND exchange_time < '2100-01-01 00:00:00+00')
    NOT VALID;
SELECT configure_storage(NULL, NULL, NULL, NULL);
