-- Migration 0007: the state of TimescaleDB's jobs, readable by the readers (the API's /health,
-- Grafana) on both editions.
--
-- TimescaleDB records each background run of a job in job_stats, and each failure's error in
-- job_errors; but job_errors (like job_history) shows a run only to the database's owner and
-- the job's owner, so the readers would see failures without their error. job_health() reads
-- them with its owner's rights (the database's owner, who runs migrate) and returns only what
-- /health and Grafana show. It reads, never writes. It reads the history under those views
-- (_timescaledb_internal.bgw_job_stat_history) through its index on (job_id, start): the
-- views are scanned whole (TimescaleDB keeps up to 1,000 failures and 1,000 successes a job
-- for a month), which took about a second with 20,000 runs recorded. The error is the
-- message, then its detail and hint when it has them, joined by '. '.
--
-- The jobs reported are the project's: every job on a relation (retention, compression and
-- continuous-aggregate refresh policies) and every user-defined action, not TimescaleDB's
-- own housekeeping (telemetry, job-history retention). The Apache edition has none of them.
-- consecutive_failures is not in TimescaleDB's views: it is read from the scheduler's table
-- of job statistics (_timescaledb_internal.bgw_job_stat).
--
-- A job is `failing` when its last run failed, and `overdue` when it has not succeeded within
-- twice its schedule: counted from its last success, else from its first recorded run, else
-- (never run at all, as when no scheduler runs it) from its initial start or the server's
-- start, whichever is later. Runs by `CALL run_job(...)` in a session are not recorded by
-- TimescaleDB: they change neither.

CREATE OR REPLACE FUNCTION job_health()
RETURNS TABLE (
    job_id                integer,
    name                  text,
    proc_name             text,
    relation              text,
    schedule_interval     interval,
    scheduled             boolean,
    last_run_started_at   timestamptz,
    last_run_status       text,
    last_success          timestamptz,
    consecutive_failures  integer,
    total_failures        bigint,
    next_start            timestamptz,
    error                 text,
    failing               boolean,
    overdue               boolean
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT j.job_id,
           CASE WHEN j.hypertable_name IS NOT NULL THEN j.proc_name || ':' || j.hypertable_name
                ELSE j.proc_schema || '.' || j.proc_name || ':' || j.job_id
           END,
           j.proc_name::text,
           j.hypertable_name::text,
           j.schedule_interval,
           j.scheduled,
           CASE WHEN s.last_run_started_at > '-infinity' THEN s.last_run_started_at END,
           s.last_run_status,
           success.at,
           coalesce(stat.consecutive_failures, 0),
           coalesce(s.total_failures, 0),
           CASE WHEN s.next_start > '-infinity' THEN s.next_start END,
           CASE WHEN s.last_run_status = 'Failed' THEN
               (SELECT CASE WHEN h.pid IS NULL AND h.execution_finish IS NULL
                            THEN 'job crash detected, see server logs'
                            ELSE concat_ws('. ', h.data -> 'error_data' ->> 'message',
                                           h.data -> 'error_data' ->> 'detail',
                                           h.data -> 'error_data' ->> 'hint')
                       END
                FROM _timescaledb_internal.bgw_job_stat_history AS h
                WHERE h.job_id = j.job_id
                  AND (h.succeeded IS FALSE OR (h.succeeded IS NULL AND h.pid IS NULL))
                ORDER BY h.execution_start DESC LIMIT 1)
           END,
           coalesce(s.last_run_status = 'Failed', false),
           now() > coalesce(
               success.at,
               (SELECT h.execution_start FROM _timescaledb_internal.bgw_job_stat_history AS h
                WHERE h.job_id = j.job_id ORDER BY h.execution_start LIMIT 1),
               greatest(j.initial_start, pg_postmaster_start_time())
           ) + 2 * j.schedule_interval
    FROM timescaledb_information.jobs AS j
    LEFT JOIN timescaledb_information.job_stats AS s ON s.job_id = j.job_id
    LEFT JOIN _timescaledb_internal.bgw_job_stat AS stat ON stat.job_id = j.job_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN s.last_successful_finish > '-infinity' THEN s.last_successful_finish
               END AS at
    ) AS success
    WHERE j.hypertable_name IS NOT NULL
       OR j.proc_schema NOT IN ('_timescaledb_functions', '_timescaledb_internal')
    ORDER BY j.job_id
$$;
REVOKE EXECUTE ON FUNCTION job_health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_health() TO tracker_reader, tracker_writer;
COMMENT ON FUNCTION job_health() IS
    'The project''s TimescaleDB jobs: last run, last success, consecutive failures, latest error, failing, overdue (not succeeded within twice the schedule).';
