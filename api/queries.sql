-- name: market
-- The market an exchange lists under a normalised symbol: (id, exchange, symbol), or no row.
SELECT id, exchange, symbol
FROM markets
WHERE exchange = %(exchange)s AND symbol = %(symbol)s;

-- name: exchange_known
-- Whether any market of the exchange is stored: (known).
SELECT EXISTS (SELECT FROM markets WHERE exchange = %(exchange)s) AS known;

-- name: market_rank
-- A market's place in the stored ranking by cv: (rank, ranked, as_of), rank NULL when it is
-- not ranked (fewer than two ticks in the window, or new since the last refresh), ranked the
-- number of ranked pairs, as_of the end of the ranking's 24-hour window in µs since the epoch
-- (NULL before the first refresh).
SELECT (SELECT rank_cv FROM rankings WHERE market_id = %(market_id)s) AS rank,
       coalesce((SELECT ranked FROM rankings_window), 0) AS ranked,
       (SELECT (extract(epoch FROM window_end) * 1000000)::int8 FROM rankings_window) AS as_of;

-- name: health
-- What /health reports of the data: the newest tick's time and age in seconds (NULLs when there
-- is none) and how many cycles the collector set aside: (time, age_seconds, set_aside). A tick
-- more than %(ahead)s seconds (one collect interval) ahead of now is no sign of a live
-- collector and is left out (the database refuses such writes from a service: migration 0006).
SELECT time, extract(epoch FROM now() - time)::float8 AS age_seconds,
       (SELECT count(*) FROM set_aside_cycles)::integer AS set_aside
FROM (
    SELECT max(time) AS time FROM ticks
    WHERE time <= now() + make_interval(secs => %(ahead)s::float8)
) AS newest;

-- name: storage_mode
-- The TimescaleDB edition's license: (license), 'timescale' (policies, continuous aggregates,
-- compression) or 'apache' (the collector's fallback).
SELECT current_setting('timescaledb.license', true) AS license;

-- name: rankings
-- One page of the ranking stored after the latest cycle, by %(by)s ('cv' or 'stdv'), optionally
-- of one exchange: (as_of, ranked, exchange, symbol, rank, stdv, cv, mean, min, max, first,
-- last, change_pct, count), as_of the end of its 24-hour window, ranked the number of pairs
-- matching, rank over all exchanges; a single row of NULLs after `ranked` when the page is
-- empty, no row before the first refresh. One branch per order, so that each reads its rank's
-- index; the other is skipped.
SELECT w.window_end AS as_of,
       CASE WHEN %(exchange)s::text IS NULL THEN w.ranked
            ELSE (SELECT count(*) FROM rankings WHERE exchange = %(exchange)s::text)
       END AS ranked,
       page.*
FROM rankings_window AS w
LEFT JOIN LATERAL (
    (SELECT exchange, symbol, rank_cv AS rank, stdv, cv, mean, min, max, first, last,
            change_pct, count
     FROM rankings
     WHERE %(by)s::text = 'cv' AND (%(exchange)s::text IS NULL OR exchange = %(exchange)s::text)
     ORDER BY rank_cv
     LIMIT %(limit)s OFFSET %(offset)s)
    UNION ALL
    (SELECT exchange, symbol, rank_stdv, stdv, cv, mean, min, max, first, last, change_pct, count
     FROM rankings
     WHERE %(by)s::text = 'stdv' AND (%(exchange)s::text IS NULL OR exchange = %(exchange)s::text)
     ORDER BY rank_stdv
     LIMIT %(limit)s OFFSET %(offset)s)
) AS page ON true
ORDER BY page.rank;

-- name: candles
-- A market's candles of width %(width)s starting in [%(start)s, %(end)s), oldest first,
-- combined from the stored level %(level)s ('5m' for widths that are multiples of 5 minutes
-- under an hour, '1h' for multiples of an hour; the other branch reads nothing):
-- (time, open, high, low, close, count, mean, stdv), stdv the sample standard deviation.
WITH stored AS (
    SELECT * FROM candles_5m WHERE %(level)s = '5m' AND market_id = %(market_id)s
    UNION ALL
    SELECT * FROM candles_1h WHERE %(level)s = '1h' AND market_id = %(market_id)s
),
parts AS (
    SELECT time_bucket(%(width)s::interval, bucket) AS time, *
    FROM stored
    WHERE bucket >= %(start)s::timestamptz - %(width)s::interval
      AND bucket < %(end)s::timestamptz + %(width)s::interval
      AND time_bucket(%(width)s::interval, bucket) >= %(start)s::timestamptz
      AND time_bucket(%(width)s::interval, bucket) < %(end)s::timestamptz
),
totals AS (
    SELECT time, sum(count) AS n, sum(count * mean) / sum(count) AS mean
    FROM parts
    GROUP BY time
)
SELECT p.time, first(p.open, p.bucket) AS open, max(p.high) AS high, min(p.low) AS low,
       last(p.close, p.bucket) AS close, t.n::bigint AS count, t.mean,
       CASE WHEN t.n > 1 THEN
           sqrt(sum(p.m2 + p.count * (p.mean - t.mean) * (p.mean - t.mean)) / (t.n - 1))
       END AS stdv
FROM parts AS p
JOIN totals AS t ON t.time = p.time
GROUP BY p.time, t.n, t.mean
ORDER BY p.time;
