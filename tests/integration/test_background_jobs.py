"""TimescaleDB's background scheduler on the Timescale-License edition: whether a job runs by
itself, as README's table "Which PostgreSQL and TimescaleDB run where" says per PostgreSQL major.
"""

import time

import psycopg
import pytest

pytestmark = pytest.mark.edition("timescale")

NOOP = "CREATE PROCEDURE noop(job_id int, config jsonb) LANGUAGE plpgsql AS $$ BEGIN END $$"
STATS = """
    SELECT s.total_successes, s.total_failures,
           (SELECT e.err_message FROM timescaledb_information.job_errors AS e
            WHERE e.job_id = s.job_id ORDER BY e.finish_time DESC LIMIT 1)
    FROM timescaledb_information.job_stats AS s WHERE s.job_id = %s"""
# What TimescaleDB 2.28.3's scheduler fails every job with on PostgreSQL 15.20 (Debian 12).
PG15_FAILURE = 'cannot drop portal "" while it is being set up'
NO_WORKER = "failed to start"


def test_a_job_runs_by_itself_except_on_postgresql_15(database_url: str) -> None:
    """A no-op job scheduled every second succeeds on its own within 20 s on PostgreSQL 16 and
    later; on 15 its runs fail with the error the README names."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000  # type: ignore[index]
        conn.execute(NOOP)
        job = conn.execute("SELECT add_job('noop', '1 second')").fetchone()[0]  # type: ignore[index]
        # A database cloned from a template (as every test's is) gets no scheduler until the
        # server restarts; a database made with CREATE EXTENSION, as the image's, gets one.
        conn.execute("SELECT _timescaledb_functions.start_background_workers()")
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                successes, failures, error = conn.execute(STATS, (job,)).fetchone() or (0, 0, None)
                # A run that found no free worker slot (max_worker_processes, shared by every
                # database's scheduler on a busy server) says nothing of the job: wait for more.
                if successes or (failures and NO_WORKER not in (error or "")):
                    break
                time.sleep(0.5)
        finally:
            conn.execute("SELECT delete_job(%s)", (job,))

    if major == 15:
        assert (0, PG15_FAILURE) == (successes, error)
    else:
        assert successes >= 1, error
