-- name: market
-- The market an exchange lists under a normalised symbol: (id, exchange, symbol), or no row.
SELECT id, exchange, symbol
FROM markets
WHERE exchange = %(exchange)s AND symbol = %(symbol)s;

-- name: exchange_known
-- Whether any market of the exchange is stored: (known).
SELECT EXISTS (SELECT FROM markets WHERE exchange = %(exchange)s) AS known;

-- name: price_history_24h
-- Every price of one market in the last 24 hours, oldest first: (time, price, stdv),
-- stdv being stddev_samp over exactly these rows (NULL for fewer than two).
SELECT time, price, stddev_samp(price) OVER () AS stdv
FROM ticks
WHERE market_id = %(market_id)s
  AND time >= now() - interval '24 hours' AND time <= now()
ORDER BY time;

-- name: newest_tick
-- The time of the newest tick and its age in seconds: (time, age_seconds), NULLs when empty.
SELECT time, extract(epoch FROM now() - time)::float8 AS age_seconds
FROM (SELECT max(time) AS time FROM ticks) AS newest;
