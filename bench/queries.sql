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

-- name: generate_markets
-- Registers %(pairs)s synthetic markets spread over %(exchanges)s exchanges (ex00, ex01, …),
-- each with symbol tok<n>usd; re-running adds nothing.
INSERT INTO markets (exchange, symbol, base, quote, first_seen, last_seen)
SELECT 'ex' || lpad((i %% %(exchanges)s)::text, 2, '0'),
       'tok' || (i / %(exchanges)s) || 'usd',
       'TOK' || (i / %(exchanges)s), 'USD', %(first_seen)s, %(last_seen)s
FROM generate_series(0, %(pairs)s - 1) AS i
ON CONFLICT (exchange, symbol) DO NOTHING;

-- name: seed_random
-- Seeds random() for this session, so a generated range is the same on every run.
SELECT setseed(%(seed)s);

-- name: generate_ticks
-- Writes one tick per market per minute in [%(start)s, %(stop)s), time-major as the collector
-- writes them; each market's price wobbles around a level fixed by its id (0.01 to 10,000).
INSERT INTO ticks (time, market_id, price)
SELECT time, id, level * (1 + 0.02 * (random() - 0.5))
FROM (
    SELECT minute.time, m.id, power(10, (m.id * 7919 %% 600) / 100.0 - 2) AS level
    FROM generate_series(
        %(start)s::timestamptz, %(stop)s::timestamptz - interval '1 minute', interval '1 minute'
    ) AS minute (time)
    CROSS JOIN markets AS m
    ORDER BY minute.time, m.id
) AS generated;

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
