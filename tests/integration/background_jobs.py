"""TimescaleDB jobs that really fail, run by TimescaleDB's own scheduler (Timescale-License
edition).

TimescaleDB records a job's runs (job_stats, job_errors) only when its background scheduler
runs it: `CALL run_job(...)` in a session records nothing, success or failure. So these
helpers ask the scheduler to run a job now (`alter_job(next_start => now())`) and wait until
it has recorded the run. The job below fails wherever it runs: where background jobs work it
raises its own error; where every background job fails (TimescaleDB 2.28.3 on PostgreSQL
15.20) it raises the same error, since the failure there comes only after a job's procedure
has returned. When no background worker is free (`max_worker_processes` is shared by every
database's scheduler and jobs), TimescaleDB records a failed attempt, counted among the
failures in a row, and tries again: so tests compare with the count the scheduler keeps
rather than with the number of runs they asked for.
"""

import asyncio
import time

import psycopg

# The project's policy jobs by name (api/jobs.py: `<procedure>:<relation>`), sorted.
POLICIES = [
    "policy_compression:ticks",
    "policy_refresh_continuous_aggregate:candles_1h",
    "policy_refresh_continuous_aggregate:candles_5m",
    "policy_retention:candles_1h",
    "policy_retention:candles_5m",
    "policy_retention:ticks",
]
# Long enough for a scheduler to find a free background worker on a busy server.
SCHEDULER_WAIT_SECONDS = 120
FAILING_ACTION_ERROR = "the test's action fails on purpose"
CREATE_FAILING_ACTION = """
    CREATE PROCEDURE failing_action(job_id integer, config jsonb)
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the test''s action fails on purpose';
    END
    $$"""
# The id of the job's latest run the scheduler recorded as ended (0: none), in the job's
# history (TimescaleDB writes it and job_stats in one transaction), with its error's message
# (without the detail job_errors appends), if any.
LATEST_RUN = """
    SELECT coalesce(max(id), 0),
           (array_agg(data -> 'error_data' ->> 'message' ORDER BY id DESC))[1]
    FROM _timescaledb_internal.bgw_job_stat_history
    WHERE job_id = %(job)s AND execution_finish IS NOT NULL"""
# What TimescaleDB records as a failed run when no background worker was free to run the job:
# it then tries again soon.
FAILED_TO_START = "failed to start job"


async def add_failing_action(database_url: str) -> int:
    """Add a user-defined action that raises, scheduled hourly but not before a day from now;
    start the database's scheduler; return the job's id."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(CREATE_FAILING_ACTION)
        cursor = await conn.execute(
            "SELECT add_job('failing_action', INTERVAL '1 hour',"
            " initial_start => now() + INTERVAL '1 day')"
        )
        (job_id,) = await cursor.fetchone() or (None,)
        # TimescaleDB's launcher starts a scheduler for a new database within its poll time
        # (a minute); this starts it now.
        await conn.execute("SELECT _timescaledb_functions.start_background_workers()")
    assert isinstance(job_id, int)
    return job_id


async def run_in_background(database_url: str, job_id: int) -> str | None:
    """Have TimescaleDB's scheduler run the job once, now, and wait (up to 2 minutes) until it
    recorded the end of a run of the job's procedure; return that run's error (None: it
    succeeded). An attempt that found no free background worker is recorded as a failure too
    (and counted in a row); the job is then asked to run again at once."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        seen, _ = await (await conn.execute(LATEST_RUN, {"job": job_id})).fetchone() or (0, 0)
        await conn.execute("SELECT alter_job(%s, next_start => now())", [job_id])
        deadline = time.monotonic() + SCHEDULER_WAIT_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            latest, error = await (await conn.execute(LATEST_RUN, {"job": job_id})).fetchone()
            if latest > seen and error != FAILED_TO_START:
                return str(error) if error is not None else None
            if latest > seen:  # no worker was free: TimescaleDB retries only after a backoff
                seen = latest
                await conn.execute("SELECT alter_job(%s, next_start => now())", [job_id])
    raise AssertionError(
        f"TimescaleDB's scheduler did not run job {job_id} within {SCHEDULER_WAIT_SECONDS} s"
    )


async def consecutive_failures(database_url: str, job_id: int) -> int:
    """How many times in a row the job failed, as TimescaleDB's scheduler counts them."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT consecutive_failures FROM _timescaledb_internal.bgw_job_stat WHERE job_id = %s",
            [job_id],
        )
        (count,) = await cursor.fetchone() or (0,)
    return int(count)


async def latest_error(database_url: str, job_id: int) -> str | None:
    """The job's latest error as job_errors shows it to the database's owner."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT err_message FROM timescaledb_information.job_errors"
            " WHERE job_id = %s ORDER BY start_time DESC LIMIT 1",
            [job_id],
        )
        row = await cursor.fetchone()
    return row[0] if row else None
