-- Runs every TimescaleDB policy on datatracker's relations now, in this session, one after
-- the other: for servers whose background jobs fail (README, Bounded storage), from cron:
--   */5 * * * *  psql -X -q -v ON_ERROR_STOP=1 -f scripts/run-jobs.sql "$OWNER_DATABASE_URL"
-- as a superuser (a job runs as its owner). TimescaleDB records nothing of a run made this
-- way: job_stats, job_errors and /health keep showing the background runs only.
SELECT format('CALL run_job(%s)', job_id)
FROM timescaledb_information.jobs
WHERE hypertable_name IS NOT NULL
ORDER BY job_id
\gexec
