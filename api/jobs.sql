-- name: job_states
-- The project's TimescaleDB jobs (migration 0007's job_health(): policies on its relations and
-- user-defined actions; none on the Apache edition), oldest first: (job_id, name, proc_name,
-- relation, schedule_seconds, scheduled, last_run_started_at, last_run_status, last_success,
-- consecutive_failures, total_failures, next_start, error, failing, overdue). Read-only, a
-- few rows.
SELECT job_id, name, proc_name, relation,
       extract(epoch FROM schedule_interval)::float8 AS schedule_seconds,
       scheduled, last_run_started_at, last_run_status, last_success,
       consecutive_failures, total_failures, next_start, error, failing, overdue
FROM job_health();
