"""A cycle the database refuses is set aside whole; the cycles behind it are written; /health
says so."""

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from collector.backlog import Backlog
from collector.cycle import fetch_cycle
from collector.sources.simulated import SimulatedSource
from collector.spool import Spool, decode_cycle
from collector.store import Store
from collector.ticks import Tick
from collector.writer import write_ticks
from tests.integration.collector_process import until

AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
POISONED = AT + MINUTE

# Refuses the collector_runs rows of one instant, as bad data would: a DataError.
POISON = """
CREATE FUNCTION refuse_poisoned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.time = '2026-01-31 12:01:00+00' THEN
        RAISE EXCEPTION 'poisoned cycle' USING ERRCODE = 'data_exception';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poisoned BEFORE INSERT ON collector_runs
    FOR EACH ROW EXECUTE FUNCTION refuse_poisoned();
"""


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool on the test's database, like the collector's."""
    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=2, kwargs={"autocommit": True}
    ) as opened:
        yield opened


async def write_through_backlog(
    pool: AsyncConnectionPool, spool: Spool, cycles: list[tuple[list[str], datetime]]
) -> Backlog:
    """Spool simulated cycles ((exchanges, instant)) and run the writer until it is done."""
    backlog = Backlog(spool, Store(pool))
    for exchanges, at in cycles:
        source = SimulatedSource(exchanges, pairs_per_exchange=4, seed=5)
        await backlog.keep(await fetch_cycle(source, at, timeout_seconds=5))
    backlog.start()

    async def drained() -> bool:
        return (0, 0) == await asyncio.to_thread(spool.waiting)

    try:
        await until(drained, 30, "the spool written")
    finally:
        await backlog.stop(asyncio.get_running_loop().time() + 5)
    return backlog


async def test_a_poison_cycle_is_set_aside_and_the_next_cycles_are_stored(
    pool: AsyncConnectionPool,
    conn: psycopg.AsyncConnection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The refused cycle leaves nothing behind, not even the markets it introduced; it is kept
    in the spool and recorded with its error, once in the log with its traceback; the cycles
    before and after it are stored whole, the later one registering okx's markets again."""
    await conn.execute(POISON)
    spool = Spool(tmp_path, max_bytes=2**20)
    caplog.set_level(logging.INFO, logger="collector")

    backlog = await write_through_backlog(
        pool,
        spool,
        [(["kraken"], AT), (["kraken", "okx"], POISONED), (["kraken", "okx"], AT + 2 * MINUTE)],
    )

    cursor = await conn.execute(
        "SELECT t.time, m.exchange, count(m.id) FROM ticks AS t"
        " LEFT JOIN markets AS m ON m.id = t.market_id GROUP BY 1, 2 ORDER BY 1, 2"
    )
    expected = [(AT, "kraken", 4), (AT + 2 * MINUTE, "kraken", 4), (AT + 2 * MINUTE, "okx", 4)]
    assert expected == await cursor.fetchall()
    cursor = await conn.execute("SELECT time FROM collector_runs GROUP BY time ORDER BY time")
    assert [(AT,), (AT + 2 * MINUTE,)] == await cursor.fetchall()
    cursor = await conn.execute(
        "SELECT time, error, exchanges, ticks, traceback LIKE 'Traceback%%' FROM set_aside_cycles"
    )
    row = ("DataException: poisoned cycle", ["kraken", "okx"], 8, True)
    assert [(POISONED, *row)] == await cursor.fetchall()
    assert ([], 1, 1) == (spool.unrecorded(), backlog.set_aside, spool.set_aside_count())
    tracebacks = [r for r in caplog.records if r.exc_info and "set aside" in r.getMessage()]
    assert 1 == len(tracebacks)
    spool.close()


async def test_a_set_aside_cycle_keeps_its_ticks_on_disk(
    pool: AsyncConnectionPool, conn: psycopg.AsyncConnection, tmp_path: Path
) -> None:
    """The spool's set_aside table holds the refused cycle's ticks, ready to be looked at."""
    await conn.execute(POISON)
    spool = Spool(tmp_path, max_bytes=2**20)
    await write_through_backlog(pool, spool, [(["kraken"], POISONED)])
    spool.close()

    with sqlite3.connect(spool.path) as db:
        ((body, error),) = db.execute("SELECT body, error FROM set_aside").fetchall()
    report = decode_cycle(body)
    assert (POISONED, 4, "DataException: poisoned cycle") == (report.at, report.fetched, error)


async def test_health_reports_set_aside_cycles_with_503(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """With a fresh tick but a cycle set aside, /health answers 503 and says why."""
    await write_ticks(conn, [Tick(now, "kraken", "btcusd", "BTC", "USD", 97000.0)])
    await conn.execute(
        "INSERT INTO set_aside_cycles (time, set_aside_at, error, exchanges, ticks)"
        " VALUES (%(now)s, %(now)s, 'DataError: bad', '{kraken}', 1)",
        {"now": now},
    )
    response = await api.get("/health")

    body = response.json()
    assert (503, "failing", 1) == (response.status_code, body["status"], body["set_aside_cycles"])
    assert "1 cycles set aside by the collector (set_aside_cycles)" == body["reason"]


async def test_health_reports_stale_data_with_503(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """A newest tick older than two collect intervals (2 minutes by default) is a 503."""
    old = now - timedelta(minutes=3)
    await write_ticks(conn, [Tick(old, "kraken", "btcusd", "BTC", "USD", 97000.0)])
    response = await api.get("/health")

    body = response.json()
    assert (503, "failing", 0) == (response.status_code, body["status"], body["set_aside_cycles"])
    assert body["reason"].startswith("the newest tick is 18")
    assert body["reason"].endswith("s old, more than 120 s")
