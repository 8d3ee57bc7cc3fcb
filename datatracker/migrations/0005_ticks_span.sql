-- Migration 0005: a write to ticks may name the span of instants it wrote, so that the API
-- reads back only those ticks rather than drop every pair's window of prices (api/windows.py).
--
-- The writer sets `datatracker.ticks_span` for its transaction to '<first µs>/<last µs>'
-- (microseconds since the Unix epoch) before it writes; the statement trigger on ticks then
-- announces `ticks <first>/<last>` instead of `ticks`. Any other write (psql, an UPDATE, a
-- DELETE, TRUNCATE) announces plain `ticks`, and the API drops its windows, as before.

CREATE OR REPLACE FUNCTION announce_ticks_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    span text := nullif(current_setting('datatracker.ticks_span', true), '');
BEGIN
    IF TG_OP = 'INSERT' AND span IS NOT NULL THEN
        PERFORM pg_notify('datatracker_changes', 'ticks ' || span);
    ELSE
        PERFORM pg_notify('datatracker_changes', 'ticks');
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION announce_ticks_change() IS
    'Announces a write to ticks on datatracker_changes: `ticks <first µs>/<last µs>` when the writer named its span (datatracker.ticks_span), else `ticks`.';

CREATE OR REPLACE TRIGGER ticks_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ticks
    FOR EACH STATEMENT EXECUTE FUNCTION announce_ticks_change();
