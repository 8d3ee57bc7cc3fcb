-- Cycles the collector could not write for a reason other than a lost connection (bad data,
-- a constraint, a bug): each is kept in the collector's spool with its ticks, and recorded
-- here so that /health and Grafana show it. The cycles after it are written as usual.
CREATE TABLE set_aside_cycles (
    time          timestamptz NOT NULL,
    set_aside_at  timestamptz NOT NULL,
    error         text        NOT NULL,
    traceback     text,
    exchanges     text[]      NOT NULL,
    ticks         integer     NOT NULL,
    CONSTRAINT set_aside_cycles_pkey PRIMARY KEY (time)
);

COMMENT ON TABLE set_aside_cycles IS 'Collection cycles not written because of an error other than a lost connection; the ticks stay in the collector''s spool. Delete a row once dealt with: /health answers 503 while any exists.';

GRANT SELECT ON set_aside_cycles TO tracker_reader;
GRANT SELECT, INSERT ON set_aside_cycles TO tracker_writer;
