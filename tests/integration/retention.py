"""Retention fixtures placed by chunk boundaries, not by now(), and running TimescaleDB's jobs.

A chunk is dropped once its whole range lies past the horizon; the ticks' chunks span a UTC
day. Ticks placed at fixed ages from now() land in an expired chunk or not depending on the
time of day, so these place them relative to the boundaries around the horizon.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from datatracker.instants import floor_to

CHUNK = timedelta(days=1)  # ticks' chunk interval (migration 0001)


@dataclass(frozen=True)
class ChunkEdges:
    """Moments for ticks around a retention horizon, and what retention leaves of them."""

    ticks: list[datetime]  # oldest first; tick n (from 1) has price n
    expired_chunks: int  # chunks among theirs that end by the horizon
    kept_prices: list[float]  # the prices of the ticks in chunks that outlive it


def chunk_edges(horizon: datetime) -> ChunkEdges:
    """Ticks in the two chunks that ended just before `horizon` (one at each edge of the later
    one), one a second into the chunk holding `horizon`, and one a day younger."""
    boundary = floor_to(horizon, CHUNK)
    second = timedelta(seconds=1)
    ticks = [
        boundary - 1.5 * CHUNK,
        boundary - CHUNK,
        boundary - second,
        boundary + second,
        horizon + CHUNK,
    ]
    return ChunkEdges(ticks, expired_chunks=2, kept_prices=[4.0, 5.0])


async def run_jobs(
    database_url: str, proc_name: str | None = None, hypertable: str | None = None
) -> list[int]:
    """Run TimescaleDB's jobs now (CALL run_job), all or those of one kind or relation, as
    their scheduler would; return their ids."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE hypertable_name IS NOT NULL"
            " AND proc_name = coalesce(%(proc)s, proc_name)"
            " AND hypertable_name = coalesce(%(relation)s, hypertable_name)"
            " ORDER BY job_id",
            {"proc": proc_name, "relation": hypertable},
        )
        jobs = [row[0] for row in await cursor.fetchall()]
        for job in jobs:
            await conn.execute("CALL run_job(%s)", [job])
    return jobs
