-- datatracker schema. Idempotent: applying it again changes nothing.
-- Applied by docker-compose on the database's first start, and by
-- `python -m datatracker initdb` everywhere else.

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
    -- Also the index of the API's 24-hour query: one pair, a time range.
    CONSTRAINT ticks_pkey PRIMARY KEY (market_id, time)
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
