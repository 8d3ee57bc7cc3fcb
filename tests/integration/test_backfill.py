"""Backfills written in bulk (grids of the simulated walk), as the role `collector`: only the
ticks not stored yet are written and counted, and the candles follow as they are written."""

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from collector.backfill import backfill
from collector.bulk import copy_or_insert, register_markets
from collector.maintenance import Maintenance
from collector.sources import TickGrid
from collector.sources.simulated import SimulatedSource
from collector.ticks import Tick
from collector.writer import write_ticks
from datatracker.database import create_pool
from datatracker.instants import floor_to
from datatracker.storage import StorageMode
from tests.integration.history import settings_for

# Recent enough for no retention to touch, old enough for no cycle of a running clock.
END = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
MINUTE = timedelta(minutes=1)
EXCHANGES = ("kraken", "binance")
MARKETS = 2 * 5

TickKey = tuple[datetime, str, str]


def walk() -> SimulatedSource:
    """The same walk every call: 5 pairs on each of two exchanges."""
    return SimulatedSource(EXCHANGES, pairs_per_exchange=5, seed=11)


async def walked(hours: float, end: datetime = END) -> dict[TickKey, float]:
    """The walk's ticks over the `hours` before `end`, by (time, exchange, symbol)."""
    return {
        (tick.time, tick.exchange, tick.symbol): tick.price
        async for batch in walk().history(end - timedelta(hours=hours), end)
        for tick in batch.ticks
    }


async def stored(url: str) -> dict[TickKey, float]:
    """Every stored tick, by (time, exchange, symbol)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT time, exchange, symbol, price FROM prices")
        return {
            (at, exchange, symbol): price for at, exchange, symbol, price in await cursor.fetchall()
        }


def tick(key: TickKey, price: float) -> Tick:
    at, exchange, symbol = key
    base, quote = ("BTC", "USD") if symbol == "btcusd" else (symbol[:3].upper(), "USD")
    return Tick(at, exchange, symbol, base, quote, price)


@pytest.fixture
async def pool(collector_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool as `python -m collector backfill` opens it, as the role `collector`."""
    opened = create_pool(collector_url, max_size=3, name="test-backfill")
    await opened.open(wait=True)
    try:
        yield opened
    finally:
        await opened.close()


async def store(url: str, ticks: list[Tick]) -> None:
    """Store ticks as the collector's cycles do."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await write_ticks(conn, ticks)


def stored_before(walk_ticks: dict[TickKey, float]) -> dict[TickKey, float]:
    """Ticks stored before a backfill, at prices the walk never gives: a whole minute, half
    of another, and a market of an exchange the backfill leaves alone."""
    minutes = sorted({at for at, _, _ in walk_ticks})
    whole = {key: 1.0 for key in walk_ticks if key[0] == minutes[29]}
    half = {key: 2.0 for key in walk_ticks if key[0] == minutes[30] and key[1] == "kraken"}
    return whole | half | {(minutes[90], "okx", "btcusd"): 3.0}


async def test_a_backfill_over_a_span_in_part_stored_writes_only_the_missing_ticks(
    pool: AsyncConnectionPool, collector_url: str
) -> None:
    """Stored ticks keep their prices, every missing one is written once, the report counts
    only those as written, and running it again writes nothing."""
    expected = await walked(hours=2)
    before = stored_before(expected)
    await store(collector_url, [tick(key, price) for key, price in before.items()])

    # Grids of half an hour: a grid holds fresh minutes, a whole stored one and a half one.
    first = await backfill(walk(), pool, END, 2, grid_ticks=MARKETS * 30)
    again = await backfill(walk(), pool, END, 2)

    assert (120 * MARKETS, 120 * MARKETS - MARKETS - 5) == (first.fetched, first.written)
    assert (120 * MARKETS, 0) == (again.fetched, again.written)
    assert expected | before == await stored(collector_url)


async def test_ticks_another_writer_stored_after_the_check_are_skipped(
    collector_url: str,
) -> None:
    """When a COPY of minutes found empty meets ticks a cycle stored meanwhile, the missing
    ticks are inserted instead, and the cycle's stay as they are."""
    grids = walk().grids(END - 30 * MINUTE, END, None, width=timedelta(days=10_000))
    whole = await anext(grids)  # one grid of the 30 minutes, whatever the clock
    cycle = {(whole.times[3], m.exchange, m.symbol): 5.0 for m in whole.markets[:4]}

    async with await psycopg.AsyncConnection.connect(collector_url, autocommit=True) as conn:
        async with conn.transaction():
            ids = await register_markets(conn, whole)
        await write_ticks(conn, [tick(key, price) for key, price in cycle.items()])
        async with conn.transaction():
            written = await copy_or_insert(conn, whole, ids)

    assert len(whole) - 4 == written
    assert cycle.items() <= (await stored(collector_url)).items()
    assert len(whole) == len(await stored(collector_url))


class BrokenWalk(SimulatedSource):
    """The walk, whose grids fail after the first with an error of the source's own."""

    async def grids(
        self, start: datetime, end: datetime, exchanges: Iterable[str] | None, *, width: timedelta
    ) -> AsyncIterator[TickGrid]:
        async for grid in super().grids(start, end, exchanges, width=width):
            yield grid
            raise RuntimeError("the source broke")


async def test_a_source_failing_half_way_fails_the_backfill_with_its_error(
    pool: AsyncConnectionPool, collector_url: str
) -> None:
    """The backfill ends with the source's error (it never waits for a grid that will not
    come), and the grid written before stays."""
    source = BrokenWalk(EXCHANGES, pairs_per_exchange=5, seed=11)

    with pytest.raises(RuntimeError, match="the source broke"):
        await asyncio.wait_for(backfill(source, pool, END, 2, grid_ticks=MARKETS * 30), 60)

    written = await stored(collector_url)
    assert 0 < len(written) <= 30 * MARKETS
    assert written.items() <= (await walked(hours=2)).items()


async def materialised_rows(database_url: str, view: str) -> int:
    """Rows the continuous aggregate `view` has materialised (not those computed in real time)."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT materialization_hypertable_schema, materialization_hypertable_name"
            " FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
            [view],
        )
        row = await cursor.fetchone()
        assert row is not None
        table = sql.Identifier(*row)
        cursor = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
        (count,) = await cursor.fetchone() or (0,)
    return int(count)


CANDLES_FROM_TICKS = """
SELECT time_bucket(%(width)s::interval, time) AS bucket, market_id, first(price, time),
       max(price), min(price), last(price, time), count(*)
FROM ticks GROUP BY 1, 2 ORDER BY 1, 2
"""


async def candles(url: str, view: str) -> list[tuple[object, ...]]:
    """The candles `view` shows: (bucket, market_id, open, high, low, close, count)."""
    query = sql.SQL(
        "SELECT bucket, market_id, open, high, low, close, count FROM {} ORDER BY 1, 2"
    ).format(sql.Identifier(view))
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await (await conn.execute(query)).fetchall()


async def run_refresh_policy(database_url: str, view: str) -> None:
    """Run the refresh policy of the continuous aggregate `view` now, as TimescaleDB would."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE hypertable_name = %s AND proc_name = 'policy_refresh_continuous_aggregate'",
            [view],
        )
        (job_id,) = await cursor.fetchone() or (None,)
        await conn.execute("CALL run_job(%s)", [job_id])


async def test_the_candles_follow_the_backfill_grid_by_grid(
    pool: AsyncConnectionPool, collector_url: str, database_url: str, edition: StorageMode
) -> None:
    """After a backfill of several grids, each candle is that of its ticks; in timescale mode
    the backfill materialises nothing itself (the collector may not), and the candles'
    refresh policies, run once, materialise every whole bucket of it."""
    maintenance = Maintenance(settings_for(collector_url), pool, edition)

    await backfill(walk(), pool, END, 3, candles=maintenance, grid_ticks=MARKETS * 20)

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        for view, width in (("candles_5m", "5 minutes"), ("candles_1h", "1 hour")):
            cursor = await conn.execute(CANDLES_FROM_TICKS, {"width": width})
            assert await cursor.fetchall() == await candles(database_url, view)
    if edition == "timescale":
        first = END - timedelta(hours=3) + MINUTE
        # The refresh policies' end offsets (migration 0002): they materialise each bucket
        # that ended that long before their run.
        for view, width, end_offset in (
            ("candles_5m", timedelta(minutes=5), timedelta(minutes=5)),
            ("candles_1h", timedelta(hours=1), timedelta(hours=1)),
        ):
            assert 0 == await materialised_rows(database_url, view)
            ran_at = datetime.now(UTC)
            await run_refresh_policy(database_url, view)
            last = min(floor_to(END, width), floor_to(ran_at - end_offset, width) - width)
            buckets = (last - floor_to(first, width)) / width + 1
            assert MARKETS * buckets == await materialised_rows(database_url, view)


@pytest.mark.edition("timescale")
async def test_a_backfill_writes_into_compressed_chunks(
    pool: AsyncConnectionPool, collector_url: str, database_url: str
) -> None:
    """History missing from a compressed chunk is written into it, stored ticks kept."""
    end = END - timedelta(days=2)
    expected = await walked(hours=2, end=end)
    before = stored_before(expected)
    await store(collector_url, [tick(key, price) for key, price in before.items()])
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT compress_chunk(c) FROM show_chunks('ticks') AS c")

    report = await backfill(walk(), pool, end, 2)

    assert 120 * MARKETS - MARKETS - 5 == report.written
    assert expected | before == await stored(collector_url)


async def test_a_backfill_reaching_past_the_raw_retention_starts_at_its_horizon(
    pool: AsyncConnectionPool, collector_url: str, database_url: str
) -> None:
    """A backfill longer than the stored raw retention is not refused: it writes the minutes
    the database still keeps, from its horizon on, and says where it started."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT configure_storage('2 days', NULL, NULL, NULL)")
        horizon = (await (await conn.execute("SELECT now() - interval '2 days'")).fetchone())[0]

    report = await backfill(walk(), pool, END, 72)

    assert horizon < report.start <= horizon + timedelta(minutes=11)
    expected = await walked(hours=(END - report.start) / timedelta(hours=1))
    assert expected == await stored(collector_url)
    assert (len(expected), len(expected)) == (report.fetched, report.written)
