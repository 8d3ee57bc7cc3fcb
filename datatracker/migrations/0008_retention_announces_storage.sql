-- Migration 0008: apply_retention() (the collector's retention, the Apache edition's only one)
-- announces the chunks it drops as `storage`, not as a write to ticks.
--
-- A plain `ticks` is a write the API cannot place: it drops every pair's window and loads all
-- of them again (api/windows.py), which daily retention turned into a daily full reload.
-- `storage` tells the API's listener to read ticks_storage() at once (it does so every half
-- second anyway, and at every full sync round): it cuts out of each window what a dropped
-- chunk held inside the 24 hours, and leaves every window as it was when the chunk was wholly
-- older (api/announcements.py, api/cache.py). Anyone may send the same payload: it costs the
-- API one read of TimescaleDB's catalog.
--
-- Every guarantee of migration 0006 holds: the function keeps its owner's rights, its pinned
-- settings and its grants (EXECUTE for tracker_writer alone); it drops only what the stored
-- settings say has expired, as before, and announces only that it did.
CREATE OR REPLACE FUNCTION apply_retention()
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres'
SET lock_timeout = '5s' AS $$
DECLARE
    s storage_settings;
    ticks_dropped integer;
BEGIN
    SELECT * INTO STRICT s FROM storage_settings;
    SELECT count(*) INTO ticks_dropped
    FROM drop_chunks('ticks', older_than => now() - fixed_length(s.raw_retention));
    IF ticks_dropped > 0 THEN
        PERFORM pg_notify('datatracker_changes', 'storage');
    END IF;
    RETURN ticks_dropped
        + (SELECT count(*) FROM drop_chunks('candles_5m',
               older_than => now() - fixed_length(s.candles_5m_retention)))::integer
        + (SELECT count(*) FROM drop_chunks('candles_1h',
               older_than => now() - fixed_length(s.candles_1h_retention)))::integer;
END
$$;
REVOKE EXECUTE ON FUNCTION apply_retention() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION apply_retention() TO tracker_writer;
COMMENT ON FUNCTION apply_retention() IS
    'Drops chunks past the stored retention horizons (storage_settings); returns how many. Announces dropped chunks of ticks as `storage` on datatracker_changes.';
