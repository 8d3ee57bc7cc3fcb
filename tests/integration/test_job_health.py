"""TimescaleDB's jobs watched: /health reports a job whose last run failed or that has not
succeeded within twice its schedule, with its error, and answers 503 after
HEALTH_JOB_FAILURES failures in a row; job_states() gives every job's state for /metrics.
The API reads them as its own role."""

import asyncio

import httpx
import psycopg
import pytest

from api.jobs import job_states
from datatracker.settings import load_settings
from tests.api_server import serve_api
from tests.integration.background_jobs import (
    FAILING_ACTION_ERROR,
    POLICIES,
    add_failing_action,
    consecutive_failures,
    latest_error,
    run_in_background,
)


def reported(body: dict[str, object], job_id: int) -> dict[str, object]:
    """The entry /health's `jobs` holds for `job_id` (the test fails when there is none)."""
    jobs = body["jobs"]
    assert isinstance(jobs, list)
    (entry,) = [job for job in jobs if job["job_id"] == job_id]
    return dict(entry)


@pytest.mark.edition("timescale")
async def test_a_failing_job_is_listed_with_its_error_then_fails_health_at_the_limit(
    database_url: str, api_url: str
) -> None:
    """A job that really fails is listed with its error and its failures in a row, at 200 while
    they are fewer than HEALTH_JOB_FAILURES; one more failure and /health answers 503 naming
    it."""
    job_id = await add_failing_action(database_url)
    error = await run_in_background(database_url, job_id)
    first = await consecutive_failures(database_url, job_id)
    limit = first + 1
    settings = load_settings(_env_file=None, database_url=api_url, health_job_failures=limit)
    async with serve_api(settings) as api:
        below = await api.get("/health")
        await run_in_background(database_url, job_id)
        second = await consecutive_failures(database_url, job_id)
        at = await api.get("/health")

    listed, failing = reported(below.json(), job_id), reported(at.json(), job_id)
    assert FAILING_ACTION_ERROR == error == await latest_error(database_url, job_id)
    assert (200, "ok", None) == (below.status_code, below.json()["status"], below.json()["reason"])
    assert (f"public.failing_action:{job_id}", "Failed", None, first, FAILING_ACTION_ERROR) == (
        listed["job"],
        listed["last_run_status"],
        listed["last_success"],
        listed["consecutive_failures"],
        listed["error"],
    )
    assert (503, "failing", second) == (
        at.status_code,
        at.json()["status"],
        failing["consecutive_failures"],
    )
    assert second >= limit
    assert (
        f"TimescaleDB job public.failing_action:{job_id}: {second} failures in a row, the last: "
        f"{FAILING_ACTION_ERROR}"
    ) == at.json()["reason"]


@pytest.mark.edition("timescale")
async def test_a_paused_job_is_listed_but_never_fails_health(
    database_url: str, api: httpx.AsyncClient
) -> None:
    """A job paused after 3 failures in a row or more (as when its work is run from cron
    instead) is still listed, with its failures, but /health answers 200."""
    job_id = await add_failing_action(database_url)
    while await consecutive_failures(database_url, job_id) < 3:
        await run_in_background(database_url, job_id)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT alter_job(%s, scheduled => false)", [job_id])
    failures = await consecutive_failures(database_url, job_id)

    response = await api.get("/health")

    entry = reported(response.json(), job_id)
    assert (200, "ok", None) == (
        response.status_code,
        response.json()["status"],
        response.json()["reason"],
    )
    assert (False, failures, FAILING_ACTION_ERROR) == (
        entry["scheduled"],
        entry["consecutive_failures"],
        entry["error"],
    )


@pytest.mark.edition("timescale")
async def test_a_policy_not_succeeded_within_twice_its_schedule_is_overdue(
    database_url: str, api: httpx.AsyncClient
) -> None:
    """A refresh policy given a 1-second schedule but kept from running for an hour (as when
    no scheduler runs it) has not succeeded within twice its schedule 2.5 s later: /health
    lists it as overdue, scheduled, still 200."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
            " AND hypertable_name = 'candles_5m'"
        )
        (job_id,) = await cursor.fetchone() or (None,)
        # Paused first, so that a run under way ends before the new schedule is set.
        await conn.execute("SELECT alter_job(%s, scheduled => false)", [job_id])
        await until_not_running(conn, job_id)
        await conn.execute(
            "SELECT alter_job(%s, schedule_interval => INTERVAL '1 second',"
            " next_start => now() + INTERVAL '1 hour', scheduled => true)",
            [job_id],
        )
    await asyncio.sleep(2.5)

    response = await api.get("/health")

    entry = reported(response.json(), job_id)
    assert (200, "ok") == (response.status_code, response.json()["status"])
    assert ("policy_refresh_continuous_aggregate:candles_5m", True, True, 1.0) == (
        entry["job"],
        entry["overdue"],
        entry["scheduled"],
        entry["schedule_seconds"],
    )


async def until_not_running(conn: psycopg.AsyncConnection, job_id: int) -> None:
    """Wait (up to 10 s) until no background run of the job is under way."""
    for _ in range(50):
        cursor = await conn.execute(
            "SELECT job_status FROM timescaledb_information.job_stats WHERE job_id = %s",
            [job_id],
        )
        if await cursor.fetchone() != ("Running",):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} was still running after 10 s")


@pytest.mark.edition("timescale")
async def test_the_api_role_sees_job_errors_only_through_job_health(
    database_url: str, api_url: str
) -> None:
    """TimescaleDB's job_errors hides a failure from the api role; job_health() (migration
    0007) shows it the error the database's owner sees."""
    job_id = await add_failing_action(database_url)
    await run_in_background(database_url, job_id)

    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM timescaledb_information.job_errors WHERE job_id = %s", [job_id]
        )
        hidden = await cursor.fetchone()
        cursor = await conn.execute("SELECT error FROM job_health() WHERE job_id = %s", [job_id])
        shown = await cursor.fetchone()

    assert (0,) == hidden
    assert (FAILING_ACTION_ERROR,) == shown


@pytest.mark.edition("timescale")
async def test_job_states_give_every_jobs_state_for_metrics(
    database_url: str, api_url: str
) -> None:
    """job_states(), as the api role, lists the six policies and a failing action with what
    /metrics exports: last run success, failures in a row, last success time."""
    job_id = await add_failing_action(database_url)
    await run_in_background(database_url, job_id)
    await run_in_background(database_url, job_id)
    failures = await consecutive_failures(database_url, job_id)

    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as conn:
        states = await job_states(conn)

    (action,) = [state for state in states if state.job_id == job_id]
    assert POLICIES == sorted(state.name for state in states if state.relation)
    assert failures >= 2
    assert (f"public.failing_action:{job_id}", False, failures, None) == (
        action.name,
        action.last_run_success,
        action.consecutive_failures,
        action.last_success_timestamp_seconds,
    )


@pytest.mark.edition("apache")
async def test_the_apache_edition_has_no_jobs(api_url: str, api: httpx.AsyncClient) -> None:
    """On the Apache edition /health says apache mode and lists no jobs; job_states() is
    empty, as the api role."""
    body = (await api.get("/health")).json()
    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as conn:
        states = await job_states(conn)

    assert ("ok", "apache", []) == (body["status"], body["storage_mode"], body["jobs"])
    assert [] == states
