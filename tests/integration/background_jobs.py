"""TimescaleDB jobs that really fail, run by TimescaleDB's own scheduler (Timescale-License
edition).

TimescaleDB records a job's runs (job_stats, job_errors) only when its background scheduler
runs it: `CALL run_job(...)` in a session records nothing, success or failure. So these
helpers ask the scheduler to run a job now (`alter_job(next_start => now())`) and wait until
it has recorded the run. The job below fails wherever it runs: where background jobs work it
raises its own error; where every background job fails (TimescaleDB 2.28.3 on PostgreSQL
15.20) it raises the same error, since the failure there comes only after a job's procedure
has returned.
"""

import asyncio
import time

import psycopg

SCHEDULER_WAIT_SECONDS = 60
FAILING_ACTION_ERROR = "the test's action fails on purpose"
CREATE_FAILING_ACTION = """
    CREATE PROCEDURE failing_action(job_id integer, config jsonb)
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the test''s action fails on purpose';
    END
    $$"""
# When the scheduler last recorded the end of a run of a job: '-infinity' when it never ran,
# NULL while a run is under way.
LAST_FINISH = """
    SELECT coalesce((SELECT CASE WHEN last_finish >= last_start THEN last_finish::text END
                     FROM _timescaledb_internal.bgw_job_stat WHERE job_id = %(job)s),
                    '-infinity')"""


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


async def run_in_background(database_url: str, job_id: int) -> None:
    """Have TimescaleDB's scheduler run the job once, now, and wait (up to a minute) until it
    recorded the end of that run."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        before = await (await conn.execute(LAST_FINISH, {"job": job_id})).fetchone()
        await conn.execute("SELECT alter_job(%s, next_start => now())", [job_id])
        deadline = time.monotonic() + SCHEDULER_WAIT_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            latest = await (await conn.execute(LAST_FINISH, {"job": job_id})).fetchone()
            if latest not in (before, (None,)):
                return
    raise AssertionError(
        f"TimescaleDB's scheduler did not run job {job_id} within {SCHEDULER_WAIT_SECONDS} s"
    )


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
