-- Migration 0001: the schema as db/init.sql declared it before migrations existed.
-- Kept exactly as it was, so that a database created then and one created now agree.

CREATE EXTENSION IF NOT EXISTS timescaledb;

-- Group roles. Login roles (one per service) are granted into these; see
-- db/create-users.sh for the Docker setup.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tracker_reader') THEN
        CREATE ROLE tracker_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tracker_writer') THEN
        CREATE ROLE tracker_writer NOLOGIN;
    END IF;
END
$$;

-- One row per currency pair per exchange. `symbol` is the normalised name the
-- API serves (lowercase base + quote, e.g. `btcusd`); base and quote are kept
-- as the exchange's unified codes (`BTC`, `USD`). first_seen is the first
-- tick's time; last_seen the latest tick's, kept to within an hour (refreshing
-- every market's row every cycle would cost as much as writing the ticks).
CREATE TABLE IF NOT EXISTS markets (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    exchange    text        NOT NULL,
    symbol      text        NOT NULL,
    base        text        NOT NULL,
    quote       text        NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    CONSTRAINT markets_exchange_symbol_key UNIQUE (exchange, symbol)
) WITH (fillfactor = 80);  -- room for in-page (HOT) updates of last_seen

-- One row per pair per collection cycle. `time` is the cycle's scheduled
-- instant, so a pair has at most one tick per cycle and the primary key makes
-- writing the same cycle twice a no-op. `exchange_time` is the exchange's own
-- timestamp, where it sends one. market_id always names a row of markets: the
-- collector registers markets in the statement that writes their ticks. There is
-- no foreign key because checking one costs a lookup per tick (about as much as
-- writing the tick itself) and TimescaleDB copies it onto every chunk.
CREATE TABLE IF NOT EXISTS ticks (
    time           timestamptz      NOT NULL,
    market_id      integer          NOT NULL,
    price          double precision NOT NULL CHECK (price > 0 AND price < 'Infinity'),
    exchange_time  timestamptz,
    -- Also the index of the API's 24-hour query: one pair, a time range. It carries the
    -- price, so that query reads only the index (one pair's day lies on a dozen index pages
    -- instead of 1,440 heap pages: ticks are stored time-major, a whole cycle at a time).
    CONSTRAINT ticks_pkey PRIMARY KEY (market_id, time) INCLUDE (price)
);

SELECT create_hypertable(
    'ticks', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE
);

-- One row per exchange per collection cycle: what the collector got and wrote.
-- Grafana's collector-health panels and the API's /health read it.
CREATE TABLE IF NOT EXISTS collector_runs (
    time           timestamptz      NOT NULL,
    exchange       text             NOT NULL,
    ok             boolean          NOT NULL,
    fetched        integer          NOT NULL,
    written        integer          NOT NULL,
    dropped        integer          NOT NULL,
    fetch_seconds  double precision NOT NULL,
    error          text,
    CONSTRAINT collector_runs_pkey PRIMARY KEY (exchange, time)
);

SELECT create_hypertable(
    'collector_runs', by_range('time', INTERVAL '7 days'), if_not_exists => TRUE
);

-- For people who query SQL directly: ticks with readable names.
CREATE OR REPLACE VIEW prices AS
SELECT m.exchange, m.symbol, t.time, t.price
FROM ticks AS t
JOIN markets AS m ON m.id = t.market_id;

COMMENT ON TABLE markets IS 'Currency pairs per exchange; symbol is lowercase base+quote (btcusd).';
COMMENT ON TABLE ticks IS 'One price per pair per collection cycle (time = the cycle''s scheduled instant).';
COMMENT ON TABLE collector_runs IS 'One row per exchange per collection cycle: fetched, written, dropped, error.';
COMMENT ON VIEW prices IS 'Ticks with exchange and symbol names: the table to query by hand.';

GRANT USAGE ON SCHEMA public TO tracker_reader, tracker_writer;
GRANT SELECT ON markets, ticks, collector_runs, prices TO tracker_reader;
GRANT SELECT, INSERT, UPDATE ON markets, ticks, collector_runs TO tracker_writer;
GRANT SELECT ON prices TO tracker_writer;

-- ---------------------------------------------------------------------------
-- Lifecycle: bounded storage and cheap reads (docs/sql.md explains each object).
--
-- Two modes, chosen by the TimescaleDB edition (`timescaledb.license`):
--   timescale (the official image): compression, retention and refresh policies run in the
--     database; candles_5m and candles_1h are continuous aggregates with real-time
--     aggregation (buckets not yet materialised are computed from the raw ticks).
--   apache (Debian/Ubuntu packages, some clouds): no policies, compression nor continuous
--     aggregates; candles_5m and candles_1h are plain hypertables of the same shape that
--     the collector rolls up after each cycle, and the collector drops expired chunks
--     (apply_retention below) on a schedule.
--
-- Intervals come from custom settings, so that both `python -m datatracker initdb` (which
-- sets them from RAW_RETENTION, COMPRESS_AFTER, CANDLES_5M_RETENTION, CANDLES_1H_RETENTION)
-- and psql at the image's first start (defaults, or `-c datatracker.raw_retention=...`) work:
--   datatracker.raw_retention        raw ticks kept          default 7 days
--   datatracker.compress_after       raw ticks compressed    default 1 day (the API's window)
--   datatracker.candles_5m_retention 5-minute candles kept   default 90 days
--   datatracker.candles_1h_retention hourly candles kept     default 730 days (2 years)
-- Applying the script again with other values replaces the changed policies.
-- ---------------------------------------------------------------------------

-- The candle columns in both modes: bucket, market_id, open, high, low, close, count,
-- mean, m2; m2 is the sum of squared deviations from the bucket's mean, so buckets combine
-- into an exact variance: M2 = sum(m2_i) + sum(n_i * (mean_i - mean)^2).
DO $$
BEGIN
    IF current_setting('timescaledb.license', true) IS DISTINCT FROM 'timescale' THEN
        CREATE TABLE IF NOT EXISTS candles_5m (
            bucket     timestamptz      NOT NULL,
            market_id  integer          NOT NULL,
            open       double precision NOT NULL,
            high       double precision NOT NULL,
            low        double precision NOT NULL,
            close      double precision NOT NULL,
            count      bigint           NOT NULL,
            mean       double precision NOT NULL,
            m2         double precision NOT NULL,
            CONSTRAINT candles_5m_pkey PRIMARY KEY (market_id, bucket)
        );
        PERFORM create_hypertable(
            'candles_5m', by_range('bucket', INTERVAL '7 days'), if_not_exists => TRUE
        );
        CREATE TABLE IF NOT EXISTS candles_1h (LIKE candles_5m INCLUDING ALL);
        PERFORM create_hypertable(
            'candles_1h', by_range('bucket', INTERVAL '60 days'), if_not_exists => TRUE
        );
        RETURN;
    END IF;

    CREATE MATERIALIZED VIEW IF NOT EXISTS candles_5m
    WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT time_bucket(INTERVAL '5 minutes', time) AS bucket,
           market_id,
           first(price, time) AS open,
           max(price) AS high,
           min(price) AS low,
           last(price, time) AS close,
           count(*) AS count,
           avg(price) AS mean,
           var_pop(price) * count(*) AS m2
    FROM ticks
    GROUP BY 1, 2
    WITH NO DATA;

    -- From the raw ticks rather than from candles_5m: a continuous aggregate on another
    -- cannot combine m2 exactly (that needs the combined mean inside the sum).
    CREATE MATERIALIZED VIEW IF NOT EXISTS candles_1h
    WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
           market_id,
           first(price, time) AS open,
           max(price) AS high,
           min(price) AS low,
           last(price, time) AS close,
           count(*) AS count,
           avg(price) AS mean,
           var_pop(price) * count(*) AS m2
    FROM ticks
    GROUP BY 1, 2
    WITH NO DATA;
END
$$;

-- Policies (timescale mode only). A policy whose interval differs from the setting is
-- replaced; one that matches is left alone, so a second run changes nothing.
DO $$
DECLARE
    raw_retention interval := coalesce(
        nullif(current_setting('datatracker.raw_retention', true), ''), '7 days')::interval;
    compress_after interval := coalesce(
        nullif(current_setting('datatracker.compress_after', true), ''), '1 day')::interval;
    candles_5m_retention interval := coalesce(
        nullif(current_setting('datatracker.candles_5m_retention', true), ''), '90 days')::interval;
    candles_1h_retention interval := coalesce(
        nullif(current_setting('datatracker.candles_1h_retention', true), ''), '730 days')::interval;
    policy record;
BEGIN
    IF current_setting('timescaledb.license', true) IS DISTINCT FROM 'timescale' THEN
        RETURN;
    END IF;

    IF NOT EXISTS (
        SELECT FROM timescaledb_information.compression_settings
        WHERE hypertable_schema = 'public' AND hypertable_name = 'ticks'
    ) THEN
        ALTER TABLE ticks SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'market_id',
            timescaledb.compress_orderby = 'time'
        );
    END IF;

    FOR policy IN
        SELECT j.job_id, j.proc_name, j.config, want.relation, want.setting
        FROM (VALUES
            ('ticks', 'policy_retention', 'drop_after', raw_retention),
            ('ticks', 'policy_compression', 'compress_after', compress_after),
            ('candles_5m', 'policy_retention', 'drop_after', candles_5m_retention),
            ('candles_1h', 'policy_retention', 'drop_after', candles_1h_retention)
        ) AS want (relation, proc_name, key, setting)
        JOIN timescaledb_information.jobs AS j
          ON j.hypertable_name = want.relation AND j.proc_name = want.proc_name
        WHERE (j.config ->> want.key)::interval IS DISTINCT FROM want.setting
    LOOP
        PERFORM delete_job(policy.job_id);
    END LOOP;

    PERFORM add_retention_policy('ticks', raw_retention, if_not_exists => TRUE);
    PERFORM add_compression_policy('ticks', compress_after, if_not_exists => TRUE);
    PERFORM add_retention_policy('candles_5m', candles_5m_retention, if_not_exists => TRUE);
    PERFORM add_retention_policy('candles_1h', candles_1h_retention, if_not_exists => TRUE);
    -- Materialise buckets once they are complete; newer ones come from real-time aggregation.
    -- The refresh windows (1 and 3 hours back) stay far inside the raw retention, so a refresh
    -- never recomputes a bucket whose ticks are already dropped.
    PERFORM add_continuous_aggregate_policy('candles_5m',
        start_offset => INTERVAL '1 hour', end_offset => INTERVAL '5 minutes',
        schedule_interval => INTERVAL '5 minutes', if_not_exists => TRUE);
    PERFORM add_continuous_aggregate_policy('candles_1h',
        start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 hour',
        schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
END
$$;

-- Statistics of every market over [start, stop] (both inclusive), as if computed from the
-- raw ticks (stddev_samp, min, max, first, last) but reading few rows: hourly candles for
-- the whole hours inside the range, 5-minute candles for the rest of its whole 5-minute
-- buckets, and raw ticks only at its two edges (under 5 minutes each).
CREATE OR REPLACE FUNCTION market_stats(start timestamptz, stop timestamptz)
RETURNS TABLE (
    market_id integer, count bigint, mean double precision, stdv double precision,
    min double precision, max double precision, first double precision, last double precision
)
-- JIT compiling this plan costs more (about 100 ms) than running it.
LANGUAGE sql STABLE SET jit = off AS $$
WITH edges AS MATERIALIZED (
    -- The first bucket boundary at or after `start` and the last at or before `stop`.
    SELECT time_bucket(INTERVAL '5 minutes', start - INTERVAL '1 microsecond')
               + INTERVAL '5 minutes' AS first_5m,
           time_bucket(INTERVAL '5 minutes', stop) AS last_5m,
           time_bucket(INTERVAL '1 hour', start - INTERVAL '1 microsecond')
               + INTERVAL '1 hour' AS first_1h,
           time_bucket(INTERVAL '1 hour', stop) AS last_1h
),
parts AS (
    SELECT c.market_id, c.bucket AS t, c.open, c.high, c.low, c.close, c.count AS n, c.mean, c.m2
    FROM candles_1h AS c, edges AS e
    WHERE c.bucket >= e.first_1h AND c.bucket < e.last_1h
    UNION ALL
    SELECT c.market_id, c.bucket, c.open, c.high, c.low, c.close, c.count, c.mean, c.m2
    FROM candles_5m AS c, edges AS e
    WHERE c.bucket >= e.first_5m AND c.bucket < least(e.first_1h, e.last_5m)
    UNION ALL
    SELECT c.market_id, c.bucket, c.open, c.high, c.low, c.close, c.count, c.mean, c.m2
    FROM candles_5m AS c, edges AS e
    WHERE c.bucket >= greatest(e.first_1h, e.last_1h, e.first_5m) AND c.bucket < e.last_5m
    UNION ALL
    SELECT k.market_id, k.time, k.price, k.price, k.price, k.price, 1, k.price, 0
    FROM ticks AS k, edges AS e
    WHERE k.time >= start AND k.time <= stop AND k.time < e.first_5m
    UNION ALL
    SELECT k.market_id, k.time, k.price, k.price, k.price, k.price, 1, k.price, 0
    FROM ticks AS k, edges AS e
    WHERE k.time >= start AND k.time <= stop AND k.time >= greatest(e.first_5m, e.last_5m)
),
-- Each part with the mean of all its market's parts, from a window over the sort that the
-- grouping uses: no join, whose plan on a fresh chunk's missing statistics can go wrong.
combined AS (
    SELECT p.*, sum(p.n * p.mean) OVER markets / sum(p.n) OVER markets AS total_mean
    FROM parts AS p
    WINDOW markets AS (PARTITION BY p.market_id)
)
SELECT c.market_id, sum(c.n)::bigint, min(c.total_mean),
       CASE WHEN sum(c.n) > 1 THEN
           sqrt(sum(c.m2 + c.n * (c.mean - c.total_mean) * (c.mean - c.total_mean))
                / (sum(c.n) - 1))
       END,
       min(c.low), max(c.high), first(c.open, c.t), last(c.close, c.t)
FROM combined AS c
GROUP BY c.market_id
$$;

-- Every pair's statistics over the 24 hours up to `window_end` with its two places in the
-- volatility ranking, most volatile first: rank_cv by the coefficient of variation (stdv /
-- mean, comparable across price levels), rank_stdv by the sample standard deviation; ties
-- by exchange and symbol. Pairs with fewer than two ticks are not ranked. One definition
-- for volatility_ranking() and refresh_rankings(), so the function and the table agree.
CREATE OR REPLACE FUNCTION volatility_ranks(window_end timestamptz)
RETURNS TABLE (
    market_id integer, exchange text, symbol text, count bigint, mean double precision,
    stdv double precision, cv double precision, min double precision, max double precision,
    first double precision, last double precision, change_pct double precision,
    rank_cv bigint, rank_stdv bigint
)
LANGUAGE sql STABLE AS $$
SELECT s.market_id, m.exchange, m.symbol, s.count, s.mean, s.stdv, s.stdv / s.mean,
       s.min, s.max, s.first, s.last, (s.last - s.first) / s.first * 100,
       row_number() OVER (ORDER BY s.stdv / s.mean DESC, m.exchange, m.symbol),
       row_number() OVER (ORDER BY s.stdv DESC, m.exchange, m.symbol)
FROM market_stats(window_end - INTERVAL '24 hours', window_end) AS s
JOIN markets AS m ON m.id = s.market_id
WHERE s.stdv IS NOT NULL
$$;

-- Pairs ranked by volatility over the 24 hours up to `window_end`, most volatile first:
-- by the coefficient of variation (stdv / mean, comparable across price levels) or, with
-- rank_by => 'stdv', by the sample standard deviation. Pairs with fewer than two ticks are
-- not ranked. Computed on each call (about 0.15 s at 1,000 pairs, seconds at 10,000): the
-- ad-hoc way, for any window_end. The `rankings` table holds the same for the latest cycle.
-- Grafana and psql: SELECT * FROM volatility_ranking();
CREATE OR REPLACE FUNCTION volatility_ranking(
    rank_by text DEFAULT 'cv', window_end timestamptz DEFAULT now()
)
RETURNS TABLE (
    exchange text, symbol text, rank bigint, stdv double precision, cv double precision,
    mean double precision, min double precision, max double precision,
    first double precision, last double precision, change_pct double precision, count bigint
)
LANGUAGE sql STABLE AS $$
SELECT r.exchange, r.symbol, CASE WHEN rank_by = 'stdv' THEN r.rank_stdv ELSE r.rank_cv END,
       r.stdv, r.cv, r.mean, r.min, r.max, r.first, r.last, r.change_pct, r.count
FROM volatility_ranks(window_end) AS r
ORDER BY 3
$$;

-- The ranking of the latest collection cycle, so that /rankings and /prices read rows instead
-- of computing it per request: one row per ranked pair, written whole by refresh_rankings().
CREATE TABLE IF NOT EXISTS rankings (
    market_id   integer          PRIMARY KEY,
    exchange    text             NOT NULL,
    symbol      text             NOT NULL,
    count       bigint           NOT NULL,
    mean        double precision NOT NULL,
    stdv        double precision NOT NULL,
    cv          double precision NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    first       double precision NOT NULL,
    last        double precision NOT NULL,
    change_pct  double precision NOT NULL,
    rank_cv     bigint           NOT NULL,
    rank_stdv   bigint           NOT NULL
);
-- Pages of the ranking: the first rows of one rank order.
CREATE INDEX IF NOT EXISTS rankings_rank_cv_idx ON rankings (rank_cv);
CREATE INDEX IF NOT EXISTS rankings_rank_stdv_idx ON rankings (rank_stdv);

-- What `rankings` holds: the end of its 24-hour window and how many pairs it ranks. One row,
-- absent until the first refresh.
CREATE TABLE IF NOT EXISTS rankings_window (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    window_end  timestamptz NOT NULL,
    ranked      bigint      NOT NULL
);

-- Replaces the stored ranking with the one over the 24 hours up to `window_end`, in one
-- transaction (readers see the old ranking or the new one, never a mix); returns how many
-- pairs it ranks. The collector calls it right after each stored cycle. The lock makes two
-- refreshes at once wait for each other instead of colliding on the primary key; readers
-- are not blocked. PL/pgSQL because it takes the lock before planning the statements after
-- it (an SQL function plans its whole body first, and two such refreshes would deadlock).
-- work_mem: at 10,000 pairs market_stats() holds ~3 M candle rows, which spill about 90 MB
-- to temporary files at the default 4 MB; 64 MB keeps them in memory (docs/sql.md).
CREATE OR REPLACE FUNCTION refresh_rankings(window_end timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql VOLATILE SET work_mem = '64MB' SET jit = off AS $$
DECLARE
    pairs bigint;
BEGIN
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

-- Apache mode's retention, which the collector calls on a schedule (timescale mode has
-- policies instead): drops the chunks wholly older than each horizon and returns how many.
-- SECURITY DEFINER because drop_chunks needs the tables' owner, and the collector logs in
-- as a tracker_writer.
CREATE OR REPLACE FUNCTION apply_retention(
    raw_retention interval, candles_5m_retention interval, candles_1h_retention interval
)
RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
SELECT (SELECT count(*) FROM drop_chunks('ticks', older_than => now() - raw_retention))::integer
     + (SELECT count(*) FROM drop_chunks('candles_5m', older_than => now() - candles_5m_retention))::integer
     + (SELECT count(*) FROM drop_chunks('candles_1h', older_than => now() - candles_1h_retention))::integer
$$;

COMMENT ON FUNCTION market_stats(timestamptz, timestamptz) IS
    'Per market over [start, stop]: count, mean, stdv (sample), min, max, first, last.';
COMMENT ON FUNCTION volatility_ranks(timestamptz) IS
    'Per ranked pair over the 24 hours up to window_end: statistics, rank_cv and rank_stdv.';
COMMENT ON FUNCTION volatility_ranking(text, timestamptz) IS
    'Pairs ranked by 24-hour volatility (cv by default, or stdv), most volatile first; computed per call.';
COMMENT ON FUNCTION refresh_rankings(timestamptz) IS
    'Replaces the rankings table with the ranking up to window_end (default now()); returns how many.';
COMMENT ON TABLE rankings IS
    'The volatility ranking of the latest collection cycle (rank_cv, rank_stdv); rankings_window says up to when.';
COMMENT ON TABLE rankings_window IS
    'One row: the end of the 24-hour window the rankings table covers, and how many pairs it ranks.';
COMMENT ON FUNCTION apply_retention(interval, interval, interval) IS
    'Apache mode: drops chunks past each retention horizon; returns how many.';

-- Announces on the channel `datatracker_changes` each statement that changes the ticks or the
-- stored ranking, whoever runs it, with what changed as payload (`ticks` or `ranking`, the
-- trigger's argument); the API keeps what it read until the next announcement that concerns
-- it (api/cache.py). PostgreSQL folds repeats of one announcement within a transaction: a
-- cycle's write is one, a ranking refresh another.
CREATE OR REPLACE FUNCTION announce_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('datatracker_changes', TG_ARGV[0]);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER ticks_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ticks
    FOR EACH STATEMENT EXECUTE FUNCTION announce_change('ticks');
CREATE OR REPLACE TRIGGER rankings_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rankings
    FOR EACH STATEMENT EXECUTE FUNCTION announce_change('ranking');
CREATE OR REPLACE TRIGGER rankings_window_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rankings_window
    FOR EACH STATEMENT EXECUTE FUNCTION announce_change('ranking');

REVOKE EXECUTE ON FUNCTION apply_retention(interval, interval, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION apply_retention(interval, interval, interval) TO tracker_writer;
GRANT SELECT ON candles_5m, candles_1h TO tracker_reader, tracker_writer;
GRANT SELECT ON rankings, rankings_window TO tracker_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON rankings, rankings_window TO tracker_writer;
DO $$
BEGIN
    IF current_setting('timescaledb.license', true) IS DISTINCT FROM 'timescale' THEN
        GRANT INSERT, UPDATE ON candles_5m, candles_1h TO tracker_writer;
    END IF;
END
$$;
