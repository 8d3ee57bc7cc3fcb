"""TimescaleDB's jobs as the database records them: what /health reports and /metrics exports.

Only background runs count: TimescaleDB records neither success nor failure of a job run by
`CALL run_job(...)` in a session.
"""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from psycopg import AsyncConnection
from psycopg.rows import class_row

from datatracker.queries import load_queries

QUERIES = load_queries(Path(__file__).with_name("jobs.sql"))


@dataclass(frozen=True, slots=True)
class JobState:
    """One job of the project (a policy on one of its relations, or a user-defined action)."""

    job_id: int
    name: str  # `<procedure>:<relation>`, or `<schema>.<procedure>:<job id>` for an action
    proc_name: str
    relation: str | None  # the hypertable or continuous aggregate, None for an action
    schedule_seconds: float
    scheduled: bool  # False when paused (alter_job(..., scheduled => false))
    last_run_started_at: datetime | None  # None: never run in the background
    last_run_status: str | None  # "Success", "Failed" or None (never run)
    last_success: datetime | None  # None: never succeeded
    consecutive_failures: int
    total_failures: int
    next_start: datetime | None
    error: str | None  # the last run's error, when it failed
    failing: bool  # the last run failed
    overdue: bool  # not succeeded within twice its schedule

    @property
    def last_run_success(self) -> bool | None:
        """Whether the last run succeeded; None when the job has never run."""
        return None if self.last_run_status is None else self.last_run_status == "Success"

    @property
    def last_success_timestamp_seconds(self) -> float | None:
        """The last success as seconds since the Unix epoch; None when there was none."""
        return None if self.last_success is None else self.last_success.timestamp()

    @property
    def needs_attention(self) -> bool:
        """Whether /health reports it: its last run failed, or it is overdue."""
        return self.failing or self.overdue


async def job_states(conn: AsyncConnection) -> list[JobState]:
    """Every job of the project with its state, oldest first; [] on the Apache edition."""
    async with conn.cursor(row_factory=class_row(JobState)) as cursor:
        await cursor.execute(QUERIES["job_states"])
        return await cursor.fetchall()
