"""The simulated history the lifecycle and ranking tests share, and how they write it.

A module of its own (not conftest.py) so that fixtures and tests see the same ANCHOR.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import LiteralString

import psycopg

from collector.maintenance import Maintenance, candle_updates
from collector.sources.simulated import SimulatedSource
from collector.ticks import Tick
from collector.writer import QUERIES, TickWriter
from datatracker.database import create_pool
from datatracker.settings import Settings, load_settings
from datatracker.storage import detect_storage_mode
from tests.conftest import as_role

# The simulated history: every minute from 23 hours before the session's start to one
# minute before it, so every tick stays inside the API's 24-hour window for the session's
# first hour whatever the moment a request is made.
ANCHOR = datetime.now(UTC).replace(second=0, microsecond=0)
HISTORY_START = ANCHOR - timedelta(hours=23)
HISTORY_END = ANCHOR - timedelta(minutes=1)
EXCHANGES = ("kraken", "binance")
PAIRS_PER_EXCHANGE = 4
# As a backfill writes: a statement per batch.
WRITE_BATCH_TICKS = 20_000
# How long a refresh waits for the policy's refresh of the same buckets to end.
CONCURRENT_REFRESH_WAIT_SECONDS = 60


async def simulated_history() -> list[Tick]:
    """The same ticks every call: a seeded walk over a few pairs on two exchanges."""
    source = SimulatedSource(EXCHANGES, pairs_per_exchange=PAIRS_PER_EXCHANGE, seed=7)
    ticks: list[Tick] = []
    async for batch in source.history(HISTORY_START - timedelta(minutes=1), HISTORY_END):
        ticks.extend(batch.ticks)
    return ticks


async def write_history(conn: psycopg.AsyncConnection, ticks: list[Tick]) -> None:
    """Write the ticks in batches, as the collector's backfill does."""
    writer = TickWriter()
    for begin in range(0, len(ticks), WRITE_BATCH_TICKS):
        await writer.write(conn, ticks[begin : begin + WRITE_BATCH_TICKS])


async def refresh_candles(database_url: str, since: datetime = HISTORY_START) -> None:
    """Bring the candles of the ticks from `since` on (by default the whole history) up to
    date: rolled up as the collector does (apache mode), or materialised as the aggregates'
    refresh policies do, as their owner (timescale mode: the collector may not)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        mode = await detect_storage_mode(conn)
        if mode == "timescale":
            for query, params in candle_updates(mode, since, datetime.now(UTC)):
                await refresh_beside_the_policies(conn, QUERIES[query], params)
            return
    await run_maintenance(database_url, lambda upkeep: upkeep.refresh_history(since))


async def refresh_beside_the_policies(
    conn: psycopg.AsyncConnection, query: LiteralString, params: Mapping[str, object]
) -> None:
    """Refresh a continuous aggregate; where TimescaleDB's jobs run by themselves (PostgreSQL
    16 and later), its refresh policy may be refreshing the same buckets at this moment, which
    TimescaleDB refuses rather than waits for: wait for that refresh to end and ask again."""
    deadline = time.monotonic() + CONCURRENT_REFRESH_WAIT_SECONDS
    while True:
        try:
            await conn.execute(query, params)
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def refresh_rankings(database_url: str) -> None:
    """As the collector: store the ranking up to now, as it does after each cycle."""
    await run_maintenance(database_url, lambda upkeep: upkeep.refresh_rankings())


async def run_maintenance(
    database_url: str, step: Callable[[Maintenance], Awaitable[object]]
) -> None:
    """Run one step of the collector's upkeep on the test's database, as role `collector`."""
    settings = settings_for(as_role(database_url, "collector"))
    pool = create_pool(settings.database_url, max_size=1, name="test-maintenance")
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            mode = await detect_storage_mode(conn)
        await step(Maintenance(settings, pool, mode))
    finally:
        await pool.close()


def settings_for(database_url: str) -> Settings:
    """Settings pointing at `database_url`, ignoring any .env file, without the API's response
    cache and price windows: answers come straight from the database."""
    return load_settings(
        _env_file=None, database_url=database_url, api_cache_mb=0, api_windows_mb=0
    )


def api_settings(database_url: str) -> Settings:
    """settings_for the test's database as the API logs in to it (role `api`)."""
    return settings_for(as_role(database_url, "api"))
