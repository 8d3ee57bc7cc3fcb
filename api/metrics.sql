-- What the API's /metrics reads of the database at each scrape (api/metrics.py), as the
-- read-only role api. Each is cheap: an index's last entry per chunk.

-- name: newest_tick
-- The newest tick's instant and its age, in seconds (NULLs when there is none):
-- (timestamp_seconds, age_seconds).
SELECT extract(epoch FROM newest)::float8 AS timestamp_seconds,
       extract(epoch FROM now() - newest)::float8 AS age_seconds
FROM (SELECT max(time) AS newest FROM ticks) AS t;
