-- Migration 0002: what the service roles need, and may no longer do, on both editions.
--
-- * The lifecycle settings live in the database (storage_settings), written by
--   `python -m datatracker migrate` through configure_storage(), which also brings the
--   Timescale-License policies in line with them.
-- * apply_retention() takes no arguments: it drops what the stored settings say has expired,
--   so the collector, which may call it, cannot choose to drop younger data.
-- * The candle aggregates (Timescale-License edition) belong to tracker_candles, a role the
--   collector is granted: refreshing a continuous aggregate takes its owner, and the collector
--   materialises the history it writes behind the refresh policies (a backfill, a filled gap,
--   cycles kept through an outage). Owning the ticks would let it drop them; owning the
--   candles lets it refresh them. tracker_candles may log in only because TimescaleDB runs a
--   relation's policy jobs as its owner and refuses an owner that cannot; it has no password.
-- * The refresh policies cover the raw retention less a day, so that whatever is written
--   within it is materialised by the policies alone, even when no collector asks.
-- * The collector inserts ticks and run records; it never updates them.

CREATE TABLE IF NOT EXISTS storage_settings (
    one                   boolean  PRIMARY KEY DEFAULT true CHECK (one),
    raw_retention         interval NOT NULL CHECK (raw_retention >= INTERVAL '2 days'),
    compress_after        interval NOT NULL CHECK (compress_after >= INTERVAL '1 day'),
    candles_5m_retention  interval NOT NULL CHECK (candles_5m_retention >= INTERVAL '2 days'),
    candles_1h_retention  interval NOT NULL CHECK (candles_1h_retention >= INTERVAL '2 days')
);
COMMENT ON TABLE storage_settings IS
    'One row: how long ticks and candles are kept and when ticks are compressed (migrate sets it).';

INSERT INTO storage_settings
SELECT true,
       coalesce(nullif(current_setting('datatracker.raw_retention', true), ''), '7 days')::interval,
       coalesce(nullif(current_setting('datatracker.compress_after', true), ''), '1 day')::interval,
       coalesce(nullif(current_setting('datatracker.candles_5m_retention', true), ''),
                '90 days')::interval,
       coalesce(nullif(current_setting('datatracker.candles_1h_retention', true), ''),
                '730 days')::interval
ON CONFLICT (one) DO NOTHING;

-- Stores the lifecycle settings (a NULL keeps the stored value) and, on the Timescale-License
-- edition, replaces each policy whose configuration differs from them; a policy that matches
-- is left alone, so running it again changes nothing. Returns the stored row.
CREATE OR REPLACE FUNCTION configure_storage(
    raw_retention interval, compress_after interval,
    candles_5m_retention interval, candles_1h_retention interval
)
RETURNS storage_settings
LANGUAGE plpgsql AS $$
DECLARE
    s storage_settings;
    -- Refreshes reach back this far: inside the raw retention, so that a refresh never
    -- recomputes a bucket whose ticks are already dropped.
    reach interval;
    policy record;
BEGIN
    UPDATE storage_settings AS t
    SET raw_retention = coalesce(configure_storage.raw_retention, t.raw_retention),
        compress_after = coalesce(configure_storage.compress_after, t.compress_after),
        candles_5m_retention = coalesce(configure_storage.candles_5m_retention,
                                        t.candles_5m_retention),
        candles_1h_retention = coalesce(configure_storage.candles_1h_retention,
                                        t.candles_1h_retention)
    RETURNING t.* INTO STRICT s;
    IF current_setting('timescaledb.license', true) IS DISTINCT FROM 'timescale' THEN
        RETURN s;
    END IF;
    reach := s.raw_retention - INTERVAL '1 day';

    FOR policy IN
        SELECT j.job_id
        FROM (VALUES
            ('ticks', 'policy_retention', 'drop_after', s.raw_retention),
            ('ticks', 'policy_compression', 'compress_after', s.compress_after),
            ('candles_5m', 'policy_retention', 'drop_after', s.candles_5m_retention),
            ('candles_1h', 'policy_retention', 'drop_after', s.candles_1h_retention),
            ('candles_5m', 'policy_refresh_continuous_aggregate', 'start_offset', reach),
            ('candles_5m', 'policy_refresh_continuous_aggregate', 'end_offset', INTERVAL '5 minutes'),
            ('candles_1h', 'policy_refresh_continuous_aggregate', 'start_offset', reach),
            ('candles_1h', 'policy_refresh_continuous_aggregate', 'end_offset', INTERVAL '1 hour')
        ) AS want (relation, proc_name, key, setting)
        JOIN timescaledb_information.jobs AS j
          ON j.hypertable_name = want.relation AND j.proc_name = want.proc_name
        WHERE (j.config ->> want.key)::interval IS DISTINCT FROM want.setting
    LOOP
        PERFORM delete_job(policy.job_id);
    END LOOP;

    PERFORM add_retention_policy('ticks', s.raw_retention, if_not_exists => TRUE);
    PERFORM add_compression_policy('ticks', s.compress_after, if_not_exists => TRUE);
    PERFORM add_retention_policy('candles_5m', s.candles_5m_retention, if_not_exists => TRUE);
    PERFORM add_retention_policy('candles_1h', s.candles_1h_retention, if_not_exists => TRUE);
    PERFORM add_continuous_aggregate_policy('candles_5m',
        start_offset => reach, end_offset => INTERVAL '5 minutes',
        schedule_interval => INTERVAL '5 minutes', if_not_exists => TRUE);
    PERFORM add_continuous_aggregate_policy('candles_1h',
        start_offset => reach, end_offset => INTERVAL '1 hour',
        schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
    RETURN s;
END
$$;
REVOKE EXECUTE ON FUNCTION configure_storage(interval, interval, interval, interval) FROM PUBLIC;
COMMENT ON FUNCTION configure_storage(interval, interval, interval, interval) IS
    'Stores the lifecycle settings (NULL keeps one) and makes the policies match; run by migrate.';

-- Drops the chunks wholly past each stored retention horizon; returns how many. The collector
-- calls it on a schedule on the Apache edition (the Timescale-License edition has policies).
-- SECURITY DEFINER because drop_chunks needs the tables' owner; the horizons are the stored
-- ones, never the caller's. Dropped ticks are announced like any other change of the ticks.
DROP FUNCTION IF EXISTS apply_retention(interval, interval, interval);
CREATE OR REPLACE FUNCTION apply_retention()
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    s storage_settings;
    ticks_dropped integer;
BEGIN
    SELECT * INTO STRICT s FROM storage_settings;
    SELECT count(*) INTO ticks_dropped
    FROM drop_chunks('ticks', older_than => now() - s.raw_retention);
    IF ticks_dropped > 0 THEN
        PERFORM pg_notify('datatracker_changes', 'ticks');
    END IF;
    RETURN ticks_dropped
        + (SELECT count(*) FROM drop_chunks('candles_5m', older_than => now() - s.candles_5m_retention))::integer
        + (SELECT count(*) FROM drop_chunks('candles_1h', older_than => now() - s.candles_1h_retention))::integer;
END
$$;
REVOKE EXECUTE ON FUNCTION apply_retention() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION apply_retention() TO tracker_writer;
COMMENT ON FUNCTION apply_retention() IS
    'Drops chunks past the stored retention horizons (storage_settings); returns how many.';

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tracker_candles') THEN
        CREATE ROLE tracker_candles LOGIN;
    END IF;
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        ALTER MATERIALIZED VIEW candles_5m OWNER TO tracker_candles;
        ALTER MATERIALIZED VIEW candles_1h OWNER TO tracker_candles;
    END IF;
END
$$;
GRANT tracker_candles TO tracker_writer;
GRANT SELECT ON ticks TO tracker_candles;

GRANT SELECT ON storage_settings, schema_migrations TO tracker_reader, tracker_writer;
REVOKE UPDATE ON ticks, collector_runs FROM tracker_writer;
