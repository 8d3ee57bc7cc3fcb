"""Database outages: the collector keeps its cycles and writes them once; the API says 503."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from collector.cycle import run_cycle
from collector.maintenance import Maintenance
from collector.report import CycleReport
from collector.sources.simulated import SimulatedSource
from collector.store import Store
from datatracker.database import create_pool
from datatracker.settings import load_settings
from tests.api_server import serve_api
from tests.integration.history import settings_for
from tests.tcp_proxy import TcpProxy

AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


async def cycles_until_stored(
    source: SimulatedSource, store: Store, start: datetime
) -> list[CycleReport]:
    """Run a cycle a minute from `start` until one is stored (the pool reconnects in its time)."""
    reports = [await run_cycle(source, store, start, timeout_seconds=5)]
    while not reports[-1].stored:
        assert len(reports) < 20, "the database did not come back within 20 cycles"
        await asyncio.sleep(1)
        reports.append(
            await run_cycle(source, store, start + len(reports) * MINUTE, timeout_seconds=5)
        )
    return reports


async def tick_count(conn: psycopg.AsyncConnection) -> tuple[int, int]:
    cursor = await conn.execute("SELECT count(*), count(DISTINCT time) FROM ticks")
    row = await cursor.fetchone()
    assert row is not None
    return row[0], row[1]


async def test_cycles_during_an_outage_are_written_once_it_ends(
    proxy: TcpProxy,
    database_url: str,
    conn: psycopg.AsyncConnection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two cycles fetched while the database is cut off are written with the next, no repeats."""
    source = SimulatedSource(["kraken", "okx"], pairs_per_exchange=10, seed=4)
    pool = create_pool(proxy.route(database_url), max_size=2, name="collector", timeout=2)
    await pool.open(wait=True)
    store = Store(pool)
    caplog.set_level(logging.INFO, logger="collector")
    try:
        first = await run_cycle(source, store, AT, timeout_seconds=5)
        await proxy.cut()
        during = [
            await run_cycle(source, store, AT + n * MINUTE, timeout_seconds=5) for n in (1, 2)
        ]
        await proxy.restore()
        after = await cycles_until_stored(source, store, AT + 3 * MINUTE)
    finally:
        await pool.close()

    cycles = 3 + len(after)
    assert [True, False, False] == [r.stored for r in (first, *during)]
    assert (20 * cycles, cycles) == await tick_count(conn)
    messages = [record.getMessage() for record in caplog.records]
    assert 1 == sum("database unreachable" in message for message in messages)
    assert 1 == sum("database reachable again" in message for message in messages)
    cursor = await conn.execute("SELECT count(*) FROM collector_runs")
    assert (2 * cycles,) == await cursor.fetchone()


async def test_a_full_backlog_drops_the_oldest_cycles(
    proxy: TcpProxy, database_url: str, conn: psycopg.AsyncConnection
) -> None:
    """With room for 25 ticks, an outage keeps only the newest two 10-tick cycles."""
    source = SimulatedSource(["kraken"], pairs_per_exchange=10, seed=4)
    pool = create_pool(proxy.route(database_url), max_size=1, name="collector", timeout=2)
    await pool.open(wait=True)
    store = Store(pool, max_backlog_ticks=25)
    try:
        await proxy.cut()
        for n in range(3):
            await run_cycle(source, store, AT + n * MINUTE, timeout_seconds=5)
        assert 10 == store.dropped_ticks
        await proxy.restore()
        after = await cycles_until_stored(source, store, AT + 3 * MINUTE)
    finally:
        await pool.close()

    last = AT + (2 + len(after)) * MINUTE
    cursor = await conn.execute("SELECT min(time), max(time), count(*) FROM ticks")
    assert (last - MINUTE, last, 20) == await cursor.fetchone()
    assert 10 * (3 + len(after)) - 20 == store.dropped_ticks


async def test_api_answers_503_during_an_outage_and_recovers(
    proxy: TcpProxy, database_url: str, conn: psycopg.AsyncConnection
) -> None:
    """/health is 503 (JSON) while the database is cut off, and 200 again once it is back."""
    await conn.execute("SELECT 1")
    settings = load_settings(_env_file=None, database_url=proxy.route(database_url))
    async with serve_api(settings) as api:
        before = await api.get("/health")
        await proxy.cut()
        during = await api.get("/health")
        await proxy.restore()
        after = await api.get("/health")

    assert [200, 503, 200] == [r.status_code for r in (before, during, after)]
    assert "database unavailable, try again shortly" == during.json()["detail"]


async def test_candles_of_a_written_backlog_are_rolled_up(
    proxy: TcpProxy, database_url: str, conn: psycopg.AsyncConnection
) -> None:
    """After an outage, upkeep covers every buffered cycle's bucket, not only the last one."""
    source = SimulatedSource(["kraken"], pairs_per_exchange=3, seed=4)
    pool = create_pool(proxy.route(database_url), max_size=1, name="collector", timeout=2)
    await pool.open(wait=True)
    store = Store(pool)
    maintenance = Maintenance(settings_for(database_url), pool, "apache")
    try:
        await proxy.cut()
        for n in (0, 5, 10):  # three 5-minute buckets
            await run_cycle(source, store, AT + n * MINUTE, timeout_seconds=5)
        await proxy.restore()
        after = await cycles_until_stored(source, store, AT + 15 * MINUTE)
        last = after[-1].at
        assert store.written_since is not None
        await maintenance.after_cycles(store.written_since, last)
    finally:
        await pool.close()

    cursor = await conn.execute(
        "SELECT count(DISTINCT bucket) FROM candles_5m WHERE bucket < %s", [AT + 15 * MINUTE]
    )
    assert (3,) == await cursor.fetchone()
