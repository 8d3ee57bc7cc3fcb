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

-- name: insert_ticks
-- Writes ticks none of which is stored yet; fails whole on the first repeat.
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

-- name: record_runs
-- Records each exchange's outcome of one cycle; recording the same cycle again keeps the first.
INSERT INTO collector_runs (time, exchange, ok, fetched, written, dropped, fetch_seconds, error)
SELECT %(time)s, *
FROM unnest(
    %(exchange)s::text[], %(ok)s::boolean[], %(fetched)s::integer[], %(written)s::integer[],
    %(dropped)s::integer[], %(fetch_seconds)s::float8[], %(error)s::text[]
)
ON CONFLICT DO NOTHING;

-- name: latest_prices
-- The newest price of every pair: where the simulated walk resumes after a restart.
SELECT DISTINCT ON (t.market_id) m.exchange, m.symbol, t.price
FROM ticks AS t
JOIN markets AS m ON m.id = t.market_id
WHERE t.time > now() - interval '7 days'
ORDER BY t.market_id, t.time DESC;
