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
-- Every market's ticks stamped in [%(start)s, %(end)s], as a write announced them:
-- (market_id, times, prices), times in µs since the epoch, oldest first.
SELECT market_id,
       array_agg((extract(epoch FROM time) * 1000000)::int8 ORDER BY time) AS times,
       array_agg(price ORDER BY time) AS prices
FROM ticks
WHERE time >= %(start)s AND time <= %(end)s
GROUP BY market_id;

-- name: markets
-- Every market's id and name: (market_id, exchange, symbol).
SELECT id, exchange, symbol FROM markets;

-- name: ranks
-- Every ranked market's place in the stored ranking by cv: (market_id, rank).
SELECT market_id, rank_cv FROM rankings;

-- name: ranked
-- How many pairs the stored ranking ranks: (ranked).
SELECT coalesce((SELECT ranked FROM rankings_window), 0) AS ranked;

-- name: raw_retention
-- How long ticks are kept, in µs: (raw_retention).
SELECT (extract(epoch FROM raw_retention) * 1000000)::int8 FROM storage_settings;
