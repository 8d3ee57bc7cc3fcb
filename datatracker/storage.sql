-- name: timescaledb_license
-- The TimescaleDB edition's license: (license), 'timescale' or 'apache' (NULL without TimescaleDB).
SELECT current_setting('timescaledb.license', true) AS license;
