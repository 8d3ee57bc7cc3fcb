-- Migration 0006: the service roles can only add true history, whatever they send and whatever
-- their session's settings (issue 17). Enforced here, in the database, not in the services.
--
-- * Every function a service role may call that acts with the owner's rights (SECURITY
--   DEFINER) pins the settings its result depends on (TimeZone, DateStyle, IntervalStyle,
--   search_path, lock_timeout, work_mem, jit) and bounds its arguments. Interval arithmetic
--   on instants uses fixed lengths (seconds), which no time zone can stretch.
-- * Ticks: insert-if-missing only (no UPDATE, DELETE or TRUNCATE for the collector); prices
--   within what the collector accepts (a CHECK constraint); instants not later than now plus
--   one minute and not earlier than the stored raw retention horizon (a row trigger whose
--   condition holds the bounds as constants, rebuilt by configure_storage()).
-- * Markets: the collector may add markets and widen first_seen/last_seen; it cannot rename,
--   re-key, narrow or delete one (a column-level UPDATE grant and row triggers).
-- * The stored ranking and, on the Apache edition, the candles are written only by
--   SECURITY DEFINER functions that compute them from the ticks: the collector cannot write
--   them directly. On the Timescale-License edition the collector is no longer a member of
--   tracker_candles, the candle aggregates' owner (migration 0002 made it one so that it
--   could refresh them, which also let it drop or empty them): their refresh policies, run
--   as that owner, materialise what is written, history behind them included.
-- * Readers (and any role that can connect) lose TEMPORARY on the database and CREATE on the
--   public schema; large objects and advisory locks need a superuser (db/init.sql).
-- Rows written by the owner (migrate) or a superuser are not bound by the time triggers:
-- restores and repairs stay possible. Rows stored before this migration are not re-checked.

-- The longest a service may write ahead of the database's clock: clock skew, never a cycle
-- (a cycle's instant is its scheduled time, at or before the write). Appears as a constant
-- below and in configure_storage(); /health ignores ticks ahead of now by more than one
-- collect interval (api/queries.sql).

-- ---------------------------------------------------------------------------------------
-- Values that cannot break aggregates.
-- ---------------------------------------------------------------------------------------
-- The collector accepts prices in [1e-12, 1e12) (collector/ticks.py). Within it every
-- aggregate the project computes stays finite: squares (m2, stddev_samp) stay below 1e24 per
-- tick, stdv / mean (cv) below 1e24 and (last - first) / first below 1e26, so the ranking,
-- the candles and /prices survive any price stored. NOT VALID: rows stored before this
-- migration are not scanned (the collector never wrote such values).
ALTER TABLE ticks ADD CONSTRAINT ticks_price_range
    CHECK (price >= 1e-12 AND price < 1e12) NOT VALID;
COMMENT ON CONSTRAINT ticks_price_range ON ticks IS
    'Prices the collector accepts (collector/ticks.py); within them stddev_samp, the candles'' m2, cv and change_pct stay finite, so one price cannot freeze the ranking or /prices.';
-- The collector stores exchange times outside these years as NULL (collector/ticks.py).
ALTER TABLE ticks ADD CONSTRAINT ticks_exchange_time_range
    CHECK (exchange_time >= '2009-01-01 00:00:00+00' AND exchange_time < '2100-01-01 00:00:00+00')
    NOT VALID;
COMMENT ON CONSTRAINT ticks_exchange_time_range ON ticks IS
    'Exchange times the collector keeps (collector/ticks.py); others it stores as NULL.';

-- ---------------------------------------------------------------------------------------
-- Instants within bounds.
-- ---------------------------------------------------------------------------------------
-- Refuses a row that the trigger's condition found out of bounds, unless the writing role
-- owns the table (migrate) or is a superuser. Called only for such rows: the condition is
-- evaluated per row, the function almost never.
-- Its search path is pinned: the writer's session must not choose what pg_class means.
CREATE OR REPLACE FUNCTION refuse_out_of_bounds() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE')
    THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'refused: a row of % out of bounds (%)', TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'check_violation';
END
$$;
COMMENT ON FUNCTION refuse_out_of_bounds() IS
    'Trigger function: refuses a row its trigger''s condition found out of bounds, unless written by the table''s owner or a superuser.';

-- Markets: new ones come with the identity's next value (no OVERRIDING SYSTEM VALUE) and a
-- plausible span; known ones only widen their span. Registrations are rare: per-row cost is
-- nothing next to the ticks.
CREATE OR REPLACE TRIGGER markets_added_in_bounds
    AFTER INSERT ON markets FOR EACH ROW
    WHEN (NEW.id IS DISTINCT FROM currval('markets_id_seq')
          OR NEW.first_seen > NEW.last_seen
          OR NEW.last_seen > now() + INTERVAL '60 seconds')
    EXECUTE FUNCTION refuse_out_of_bounds('a market''s id comes from its sequence; first_seen <= last_seen <= now + 1 minute');
CREATE OR REPLACE TRIGGER markets_only_widen
    AFTER UPDATE ON markets FOR EACH ROW
    WHEN (NEW.first_seen > OLD.first_seen OR NEW.last_seen < OLD.last_seen
          OR NEW.last_seen > now() + INTERVAL '60 seconds')
    EXECUTE FUNCTION refuse_out_of_bounds('first_seen and last_seen only widen, up to now + 1 minute');

CREATE OR REPLACE TRIGGER collector_runs_in_bounds
    AFTER INSERT ON collector_runs FOR EACH ROW
    WHEN (NEW.time > now() + INTERVAL '60 seconds')
    EXECUTE FUNCTION refuse_out_of_bounds('time <= now + 1 minute');
CREATE OR REPLACE TRIGGER set_aside_cycles_in_bounds
    AFTER INSERT ON set_aside_cycles FOR EACH ROW
    WHEN (NEW.time > now() + INTERVAL '60 seconds'
          OR NEW.set_aside_at > now() + INTERVAL '60 seconds')
    EXECUTE FUNCTION refuse_out_of_bounds('time, set_aside_at <= now + 1 minute');

-- Ticks: the trigger ticks_in_bounds is built by configure_storage() (below, run by migrate
-- after the migrations and whenever the settings change), because its lower bound is the
-- stored raw retention and a trigger's condition cannot read a table. An AFTER row trigger
-- keeps COPY's batched insert path (a BEFORE row trigger would turn it off); measured in
-- bench/RESULTS.md.
CREATE OR REPLACE FUNCTION configure_storage(
    raw_retention interval, compress_after interval,
    candles_5m_retention interval, candles_1h_retention interval
)
RETURNS storage_settings
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
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

    -- Instants a service may write: from the raw retention horizon to now plus one minute,
    -- both as whole seconds (fixed lengths: no session time zone can stretch them).
    EXECUTE format(
        'CREATE OR REPLACE TRIGGER ticks_in_bounds AFTER INSERT ON ticks FOR EACH ROW'
        ' WHEN (NEW.time > now() + INTERVAL %L OR NEW.time < now() - INTERVAL %L)'
        ' EXECUTE FUNCTION refuse_out_of_bounds(%L)',
        '60 seconds',
        extract(epoch FROM s.raw_retention)::bigint || ' seconds',
        'time from now - ' || s.raw_retention::text || ' (raw retention) to now + 1 minute');

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
    'Stores the lifecycle settings (NULL keeps one), bounds the instants of ticks to them and makes the policies match; run by migrate.';
SELECT configure_storage(NULL, NULL, NULL, NULL);

-- ---------------------------------------------------------------------------------------
-- Functions the collector calls, with the owner's rights, pinned.
-- ---------------------------------------------------------------------------------------
-- An interval as the same number of whole seconds (a month counts 30 days), which adds to an
-- instant the same way in every time zone.
CREATE OR REPLACE FUNCTION fixed_length(span interval) RETURNS interval
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT make_interval(secs => extract(epoch FROM span)::float8)
$$;
COMMENT ON FUNCTION fixed_length(interval) IS
    'The interval as whole seconds (fixed length: adds to an instant alike in every time zone).';

-- Drops the chunks wholly past each stored retention horizon; returns how many. Horizons
-- are the stored ones in whole seconds from now(), in UTC whatever the caller's TimeZone
-- (a POSIX zone with a 320-hour daylight-saving jump once moved them days into the future).
-- lock_timeout: a reader holding a chunk open (a long transaction) makes retention give up
-- for this round instead of queueing every write behind its lock.
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
        PERFORM pg_notify('datatracker_changes', 'ticks');
    END IF;
    RETURN ticks_dropped
        + (SELECT count(*) FROM drop_chunks('candles_5m',
               older_than => now() - fixed_length(s.candles_5m_retention)))::integer
        + (SELECT count(*) FROM drop_chunks('candles_1h',
               older_than => now() - fixed_length(s.candles_1h_retention)))::integer;
END
$$;

-- Replaces the stored ranking with the one over the 24 hours up to `window_end` (default
-- now). With the owner's rights, so that no service writes the ranking itself. Refuses a
-- window_end that is not finite or later than now (`infinity` once emptied the ranking).
CREATE OR REPLACE FUNCTION refresh_rankings(window_end timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres'
SET work_mem = '64MB' SET jit = off AS $$
DECLARE
    pairs bigint;
BEGIN
    IF window_end IS NULL OR NOT isfinite(window_end) OR window_end > now() THEN
        RAISE EXCEPTION 'refused: window_end % is not a finite instant up to now', window_end
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE rankings IN EXCLUSIVE MODE;
    DELETE FROM rankings;
    INSERT INTO rankings (market_id, exchange, symbol, count, mean, stdv, cv, min, max, first,
                          last, change_pct, rank_cv, rank_stdv)
    SELECT r.market_id, r.exchange, r.symbol, r.count, r.mean, r.stdv, r.cv, r.min, r.max,
           r.first, r.last, r.change_pct, r.rank_cv, r.rank_stdv
    FROM volatility_ranks(refresh_rankings.window_end) AS r;
    GET DIAGNOSTICS pairs = ROW_COUNT;
    INSERT INTO rankings_window AS w (window_end, ranked)
    VALUES (refresh_rankings.window_end, pairs)
    ON CONFLICT (one) DO UPDATE SET window_end = excluded.window_end, ranked = excluded.ranked;
    RETURN pairs;
END
$$;
REVOKE EXECUTE ON FUNCTION refresh_rankings(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refresh_rankings(timestamptz) TO tracker_writer;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON rankings, rankings_window FROM tracker_writer;

-- Apache mode: recomputes from the raw ticks the 5-minute candles of every bucket from the
-- one holding `since` to the one ending at `until` (a bucket boundary), with the same
-- expressions as the continuous aggregate of timescale mode; returns how many. Grouped by
-- market first: the candles then come in the order of their primary key, which an hour of
-- 10,000 pairs inserts in about four fifths of the time. `until` is clamped to now plus a
-- minute (no tick is later); the candles come from the ticks alone, so no argument can make
-- them say anything else.
CREATE OR REPLACE FUNCTION roll_up_candles_5m(since timestamptz, until timestamptz)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres'
SET work_mem = '64MB' SET jit = off AS $$
DECLARE
    candles bigint;
    stop timestamptz := least(until, now() + INTERVAL '60 seconds');
BEGIN
    INSERT INTO candles_5m AS c (bucket, market_id, open, high, low, close, count, mean, m2)
    SELECT time_bucket(INTERVAL '5 minutes', t.time), t.market_id, first(t.price, t.time),
           max(t.price), min(t.price), last(t.price, t.time), count(*), avg(t.price),
           var_pop(t.price) * count(*)
    FROM ticks AS t
    WHERE t.time >= time_bucket(INTERVAL '5 minutes', since) AND t.time < stop
    GROUP BY 2, 1
    ON CONFLICT (market_id, bucket) DO UPDATE
        SET open = excluded.open, high = excluded.high, low = excluded.low,
            close = excluded.close, count = excluded.count, mean = excluded.mean,
            m2 = excluded.m2;
    GET DIAGNOSTICS candles = ROW_COUNT;
    RETURN candles;
END
$$;

-- Apache mode: recomputes the hourly candles from the hour holding `since` to the one ending
-- at `until` (an hour boundary) by combining their 5-minute candles exactly:
-- M2 = sum(m2_i) + sum(n_i * (mean_i - mean)^2); returns how many. The hour's mean comes from
-- a window over the same sort the grouping uses: no join whose plan could turn into a nested
-- loop on a fresh chunk's missing statistics (it did, for minutes).
CREATE OR REPLACE FUNCTION roll_up_candles_1h(since timestamptz, until timestamptz)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres'
SET work_mem = '64MB' SET jit = off AS $$
DECLARE
    candles bigint;
    stop timestamptz := least(until, now() + INTERVAL '60 seconds');
BEGIN
    INSERT INTO candles_1h AS c (bucket, market_id, open, high, low, close, count, mean, m2)
    SELECT p.hour, p.market_id, first(p.open, p.bucket), max(p.high), min(p.low),
           last(p.close, p.bucket), sum(p.count), min(p.hour_mean),
           sum(p.m2 + p.count * (p.mean - p.hour_mean) * (p.mean - p.hour_mean))
    FROM (
        SELECT time_bucket(INTERVAL '1 hour', f.bucket) AS hour, f.market_id, f.bucket,
               f.open, f.high, f.low, f.close, f.count, f.mean, f.m2,
               sum(f.count * f.mean) OVER hours / sum(f.count) OVER hours AS hour_mean
        FROM candles_5m AS f
        WHERE f.bucket >= time_bucket(INTERVAL '1 hour', since) AND f.bucket < stop
        WINDOW hours AS (PARTITION BY f.market_id, time_bucket(INTERVAL '1 hour', f.bucket))
    ) AS p
    GROUP BY p.market_id, p.hour
    ON CONFLICT (market_id, bucket) DO UPDATE
        SET open = excluded.open, high = excluded.high, low = excluded.low,
            close = excluded.close, count = excluded.count, mean = excluded.mean,
            m2 = excluded.m2;
    GET DIAGNOSTICS candles = ROW_COUNT;
    RETURN candles;
END
$$;
COMMENT ON FUNCTION roll_up_candles_5m(timestamptz, timestamptz) IS
    'Apache mode: recomputes the 5-minute candles of [since, until) from the ticks; returns how many.';
COMMENT ON FUNCTION roll_up_candles_1h(timestamptz, timestamptz) IS
    'Apache mode: recomputes the hourly candles of [since, until) from the 5-minute ones; returns how many.';
REVOKE EXECUTE ON FUNCTION roll_up_candles_5m(timestamptz, timestamptz),
    roll_up_candles_1h(timestamptz, timestamptz) FROM PUBLIC;
DO $$
BEGIN
    IF current_setting('timescaledb.license', true) IS DISTINCT FROM 'timescale' THEN
        GRANT EXECUTE ON FUNCTION roll_up_candles_5m(timestamptz, timestamptz),
            roll_up_candles_1h(timestamptz, timestamptz) TO tracker_writer;
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON candles_5m, candles_1h FROM tracker_writer;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------
-- What the collector may write directly.
-- ---------------------------------------------------------------------------------------
-- Markets: add, and widen first_seen/last_seen (register_markets, touch_markets). currval
-- in markets_added_in_bounds reads the identity's sequence: SELECT on it, nothing more.
REVOKE UPDATE ON markets FROM tracker_writer;
GRANT UPDATE (first_seen, last_seen) ON markets TO tracker_writer;
GRANT SELECT ON SEQUENCE markets_id_seq TO tracker_writer;
-- Ticks, run records and set-aside cycles: insert (and read) only.
REVOKE UPDATE, DELETE, TRUNCATE ON ticks, collector_runs, set_aside_cycles FROM tracker_writer;

-- ---------------------------------------------------------------------------------------
-- What no service needs: temporary objects and new objects in the schema.
-- ---------------------------------------------------------------------------------------
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Two collectors writing the same cycle take turns on its first instant (collector/writer.py),
-- so that the second finds the first's ticks and skips them without an error. The advisory
-- locks themselves are taken from PUBLIC (db/init.sql: any role could otherwise take the key
-- `migrate` waits for), so the writer takes its turn through this function, whose keys are
-- instants in µs since the Unix epoch from 2009 on (above 1.2e15: far from the migration
-- lock's 0x6474726B) and held to the end of the transaction.
CREATE OR REPLACE FUNCTION take_instant_turn(instant timestamptz)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC' AS $$
BEGIN
    IF instant IS NULL OR NOT isfinite(instant) OR instant < TIMESTAMPTZ '2009-01-01 00:00Z' THEN
        RAISE EXCEPTION 'refused: an instant from 2009 on, not %', instant
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM pg_advisory_xact_lock((extract(epoch FROM instant) * 1000000)::bigint);
END
$$;
REVOKE EXECUTE ON FUNCTION take_instant_turn(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION take_instant_turn(timestamptz) TO tracker_writer;
COMMENT ON FUNCTION take_instant_turn(timestamptz) IS
    'Waits for the turn of a cycle''s first instant (to the end of the transaction): collectors writing the same cycle take turns.';

-- The collector no longer owns the candle aggregates (Timescale-License edition): owning them
-- is what refresh_continuous_aggregate() requires, and it cannot be wrapped in a function
-- (TimescaleDB refuses it there), so the refresh policies, run as tracker_candles, are left
-- to materialise history written behind them (a backfill, a filled gap, cycles kept through
-- an outage) at their next run; until then real-time aggregation covers what is newer.
REVOKE tracker_candles FROM tracker_writer;
