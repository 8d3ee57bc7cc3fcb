"""The simulated history the lifecycle and ranking tests share, and how they write it.

A module of its own (not conftest.py) so that fixtures and tests see the same ANCHOR.
"""

from datetime import UTC, datetime, timedelta

import psycopg

from collector.maintenance import Maintenance
from collector.sources.simulated import SimulatedSource
from collector.ticks import Tick
from collector.writer import TickWriter
from datatracker.database import create_pool
from datatracker.settings import Settings, load_settings
from datatracker.storage import StorageMode

# The simulated history: every minute from 23 hours before the session's start to one
# minute before it, so every tick stays inside the API's 24-hour window for the session's
# first hour whatever the moment a request is made.
ANCHOR = datetime.now(UTC).replace(second=0, microsecond=0)
HISTORY_START = ANCHOR - timedelta(hours=23)
HISTORY_END = ANCHOR - timedelta(minutes=1)
EXCHANGES = ("kraken", "binance")
PAIRS_PER_EXCHANGE = 4
# PGlite's server dies on statements of a few thousand rows.
WRITE_BATCH_TICKS = 800


async def simulated_history() -> list[Tick]:
    """The same ticks every call: a seeded walk over a few pairs on two exchanges."""
    source = SimulatedSource(EXCHANGES, pairs_per_exchange=PAIRS_PER_EXCHANGE, seed=7)
    ticks: list[Tick] = []
    async for batch in source.history(HISTORY_START - timedelta(minutes=1), HISTORY_END):
        ticks.extend(batch.ticks)
    return ticks


async def write_history(conn: psycopg.AsyncConnection, ticks: list[Tick]) -> None:
    """Write the ticks in small statements."""
    writer = TickWriter(copy=False)  # PGlite cannot COPY FROM STDIN
    for begin in range(0, len(ticks), WRITE_BATCH_TICKS):
        await writer.write(conn, ticks[begin : begin + WRITE_BATCH_TICKS])


async def refresh_candles(
    settings: Settings, mode: StorageMode, since: datetime = HISTORY_START
) -> None:
    """Materialise (timescale) or roll up (apache) the candles from `since` (the whole history)."""
    pool = create_pool(settings.database_url, max_size=1, name="test-maintenance")
    await pool.open(wait=True)
    try:
        await Maintenance(settings, pool, mode).refresh_history(since)
    finally:
        await pool.close()


async def refresh_rankings(settings: Settings) -> None:
    """Store the ranking up to now, as the collector does after each cycle (either mode)."""
    pool = create_pool(settings.database_url, max_size=1, name="test-maintenance")
    await pool.open(wait=True)
    try:
        await Maintenance(settings, pool, "apache").refresh_rankings()
    finally:
        await pool.close()


def settings_for(database_url: str) -> Settings:
    """Settings pointing at `database_url`, ignoring any .env file, for one connection at a
    time (PGlite's limit): a pool of one, and no response cache (whose listener is another)."""
    return load_settings(
        _env_file=None, database_url=database_url, db_pool_max_size=1, api_cache_mb=0
    )
