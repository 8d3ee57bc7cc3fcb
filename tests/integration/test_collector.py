"""Collector cycles against a real TimescaleDB: every tick written once, exchanges isolated."""

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from collector.backfill import backfill
from collector.cycle import run_cycle
from collector.service import Collector
from collector.sources.live import LiveSource
from collector.sources.simulated import SimulatedSource
from collector.spool import Spool
from collector.store import Store
from collector.ticks import Tick
from collector.writer import TickWriter, write_ticks
from datatracker.settings import load_settings
from tests.fake_exchange import EXCHANGES, FakeExchangeServer, Fault
from tests.integration.collector_process import until

AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool on the test's database, like the collector's."""
    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=2, kwargs={"autocommit": True}
    ) as opened:
        yield opened


@pytest.fixture
async def exchange_server() -> AsyncIterator[FakeExchangeServer]:
    """The fake exchanges on 127.0.0.1, listing a few real pairs each."""
    async with FakeExchangeServer.with_default_markets() as server:
        yield server


@pytest.fixture
async def live_source(exchange_server: FakeExchangeServer) -> AsyncIterator[LiveSource]:
    """The live source pointed at the fake exchanges, rate limiter off."""
    source = LiveSource(
        EXCHANGES,
        timeout_seconds=2,
        markets_reload_seconds=3600,
        base_url=exchange_server.base_url,
        rate_limit=False,
    )
    for client in source._clients.values():
        client.timeout_on_exit = 0  # ccxt sleeps this long in close()
    yield source
    await source.close()


async def count(conn: psycopg.AsyncConnection, query: str = "SELECT count(*) FROM ticks") -> int:
    cursor = await conn.execute(query)  # type: ignore[arg-type]
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_cycle_writes_every_tick_once(
    pool: AsyncConnectionPool, conn: psycopg.AsyncConnection
) -> None:
    """25 simulated pairs on 3 exchanges make 75 ticks at the cycle's instant; a rerun adds none."""
    source = SimulatedSource(["binance", "kraken", "okx"], pairs_per_exchange=25, seed=1)

    first = await run_cycle(source, Store(pool), AT, timeout_seconds=5)
    again = await run_cycle(source, Store(pool), AT, timeout_seconds=5)

    assert (75, 0) == (first.written, again.written)
    assert 75 == await count(conn)
    assert 75 == await count(conn, "SELECT count(*) FROM markets")
    cursor = await conn.execute("SELECT DISTINCT time FROM ticks")
    assert [(AT,)] == await cursor.fetchall()


async def test_a_cycle_records_each_exchange_outcome(
    pool: AsyncConnectionPool, conn: psycopg.AsyncConnection
) -> None:
    """collector_runs gets one row per exchange with what was fetched and written."""
    source = SimulatedSource(["binance", "kraken"], pairs_per_exchange=10, seed=1)
    await run_cycle(source, Store(pool), AT, timeout_seconds=5)
    cursor = await conn.execute(
        "SELECT exchange, ok, fetched, written, error FROM collector_runs ORDER BY exchange"
    )
    expected = [("binance", True, 10, 10, None), ("kraken", True, 10, 10, None)]
    assert expected == await cursor.fetchall()


async def test_rewriting_part_of_a_batch_adds_only_the_new_ticks(
    conn: psycopg.AsyncConnection,
) -> None:
    """A batch overlapping stored ticks writes only the ones not stored, counted per exchange."""
    tick = Tick(AT, "kraken", "btcusd", "BTC", "USD", 97000.0)
    later = Tick(AT + timedelta(minutes=1), "kraken", "btcusd", "BTC", "USD", 97010.0)
    other = Tick(AT, "okx", "btcusdt", "BTC", "USDT", 97005.0)
    writer = TickWriter()

    assert {"kraken": 1} == await writer.write(conn, [tick])
    assert {"kraken": 1, "okx": 1} == await writer.write(conn, [tick, later, other])
    assert {} == await write_ticks(conn, [tick, later, other])
    assert 3 == await count(conn)


async def test_markets_keep_base_quote_and_first_and_last_seen(
    conn: psycopg.AsyncConnection,
) -> None:
    """A market is registered once, with base and quote, seen from its first to last tick."""
    ticks = [
        Tick(AT + timedelta(minutes=m), "kraken", "1inchusd", "1INCH", "USD", 0.43)
        for m in (3, 1, 2)
    ]
    await write_ticks(conn, ticks)
    cursor = await conn.execute(
        "SELECT exchange, symbol, base, quote, first_seen, last_seen FROM markets"
    )
    expected = (
        "kraken",
        "1inchusd",
        "1INCH",
        "USD",
        AT + timedelta(minutes=1),
        AT + timedelta(minutes=3),
    )
    assert [expected] == await cursor.fetchall()


async def test_live_cycle_reads_every_fake_exchange(
    live_source: LiveSource, pool: AsyncConnectionPool, conn: psycopg.AsyncConnection
) -> None:
    """Through ccxt and the fake server, each exchange's pairs land with their prices."""
    report = await run_cycle(live_source, Store(pool), AT, timeout_seconds=5)

    assert [] == report.failed
    cursor = await conn.execute(
        "SELECT exchange, symbol, price FROM prices WHERE symbol IN ('btcusd', 'btcusdt')"
        " ORDER BY exchange, symbol"
    )
    expected = [
        ("binance", "btcusdt", 97000.01),
        ("bitstamp", "btcusd", 97010.0),
        ("coinbase", "btcusd", 96990.12),
        ("kraken", "btcusd", 96950.5),
        ("okx", "btcusdt", 97001.3),
    ]
    assert expected == await cursor.fetchall()
    assert 25 == report.written


async def test_exchange_timestamps_are_kept_where_sent(
    live_source: LiveSource, pool: AsyncConnectionPool, conn: psycopg.AsyncConnection
) -> None:
    """A ticker time is stored where the exchange sends one (not kraken, not coinbase)."""
    await run_cycle(live_source, Store(pool), AT, timeout_seconds=5)
    cursor = await conn.execute(
        "SELECT m.exchange, bool_and(t.exchange_time IS NOT NULL) FROM ticks t"
        " JOIN markets m ON m.id = t.market_id GROUP BY m.exchange ORDER BY m.exchange"
    )
    expected = [
        ("binance", True),
        ("bitstamp", True),
        ("coinbase", False),
        ("kraken", False),
        ("okx", True),
    ]
    assert expected == await cursor.fetchall()


async def test_a_failing_exchange_does_not_stop_the_others(
    exchange_server: FakeExchangeServer,
    live_source: LiveSource,
    pool: AsyncConnectionPool,
    conn: psycopg.AsyncConnection,
) -> None:
    """kraken answering 503 is recorded as failed while the four others are written."""
    exchange_server.faults["kraken"] = Fault(status=503, body="Service Unavailable")

    report = await run_cycle(live_source, Store(pool), AT, timeout_seconds=5)

    assert ["kraken"] == report.failed
    assert 25 - 6 == report.written
    cursor = await conn.execute("SELECT ok, error FROM collector_runs WHERE exchange = 'kraken'")
    ((ok, error),) = await cursor.fetchall()
    assert (False, True) == (ok, error.startswith("ExchangeNotAvailable"))


async def test_a_slow_exchange_is_cut_off_at_its_timeout(
    exchange_server: FakeExchangeServer, live_source: LiveSource, pool: AsyncConnectionPool
) -> None:
    """An exchange slower than the timeout fails alone, and the cycle ends at the timeout."""
    exchange_server.faults["okx"] = Fault(delay_seconds=30)
    started = time.monotonic()

    report = await run_cycle(live_source, Store(pool), AT, timeout_seconds=1.5)

    assert ["okx"] == report.failed
    assert 25 - 5 == report.written
    assert time.monotonic() - started < 10


async def test_simulated_backfill_fills_the_window_and_is_idempotent(
    pool: AsyncConnectionPool, conn: psycopg.AsyncConnection
) -> None:
    """Two hours of a 4-pair walk are 120 ticks per pair; running it again adds nothing."""
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    source = SimulatedSource(["kraken"], pairs_per_exchange=4, seed=2)
    first = await backfill(source, pool, end, hours=2)
    again = await backfill(
        SimulatedSource(["kraken"], pairs_per_exchange=4, seed=2), pool, end, hours=2
    )

    assert (480, 480, 0) == (first.fetched, first.written, again.written)
    cursor = await conn.execute("SELECT min(time), max(time) FROM ticks")
    assert [(end - timedelta(minutes=119), end)] == await cursor.fetchall()


async def test_live_backfill_uses_one_minute_candles(
    exchange_server: FakeExchangeServer,
    live_source: LiveSource,
    pool: AsyncConnectionPool,
    conn: psycopg.AsyncConnection,
) -> None:
    """Each candle's close becomes the tick at the candle's end, for every listed pair."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    report = await backfill(live_source, pool, end, hours=1)

    assert 25 * 60 == report.written
    cursor = await conn.execute(
        "SELECT count(*), min(time), max(time) FROM prices"
        " WHERE exchange = 'kraken' AND symbol = 'btcusd'"
    )
    assert [(60, end - timedelta(minutes=59), end)] == await cursor.fetchall()


async def test_two_collectors_on_one_database_store_each_tick_once(
    database_url: str, conn: psycopg.AsyncConnection
) -> None:
    """Two collectors started by mistake write the same cycle at once: every tick lands once."""
    pools = [
        AsyncConnectionPool(
            database_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
        )
        for _ in range(2)
    ]
    for pool in pools:
        await pool.open(wait=True)
    try:
        reports = await asyncio.gather(
            *(
                run_cycle(
                    SimulatedSource(["binance", "kraken"], pairs_per_exchange=40, seed=9),
                    Store(pool),
                    AT,
                    timeout_seconds=5,
                )
                for pool in pools
            )
        )
    finally:
        for pool in pools:
            await pool.close()

    assert [True, True] == [report.stored for report in reports]
    assert 80 == sum(report.written for report in reports)
    assert 80 == await count(conn)


async def test_an_exchange_back_after_failed_cycles_has_its_gap_filled(
    exchange_server: FakeExchangeServer,
    live_source: LiveSource,
    pool: AsyncConnectionPool,
    conn: psycopg.AsyncConnection,
    tmp_path: Path,
) -> None:
    """kraken failing for five minutes gets those minutes from its 1-minute candles once it
    answers again, without a restart; the exchanges that never failed get nothing extra."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    settings = load_settings(_env_file=None, database_url="postgresql:///unused")
    collector = Collector(settings, live_source, pool, Spool(tmp_path, max_bytes=2**20))
    await collector.collect(now - 6 * MINUTE)
    exchange_server.faults["kraken"] = Fault(status=503, body="Service Unavailable")
    for minutes in range(5, 0, -1):
        await collector.collect(now - minutes * MINUTE)
    del exchange_server.faults["kraken"]

    await collector.collect(now)
    await collector.wait_for_fills()

    cursor = await conn.execute(
        "SELECT exchange, count(DISTINCT time), min(time), max(time) FROM prices GROUP BY 1"
    )
    assert [("kraken", 5, now - 5 * MINUTE, now - MINUTE)] == await cursor.fetchall()
    collector.spool.close()


async def test_scheduled_cycles_as_the_collector_role_get_candles_and_a_ranking(
    collector_url: str, conn: psycopg.AsyncConnection, tmp_path: Path
) -> None:
    """Two cycles fetched by the scheduled job and written by the writer, as role `collector`,
    leave each pair ranked and its 5-minute candles in place, in either edition."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    settings = load_settings(_env_file=None, database_url=collector_url)
    source = SimulatedSource(["kraken", "okx"], pairs_per_exchange=3, seed=2)
    async with AsyncConnectionPool(
        collector_url, min_size=1, max_size=2, kwargs={"autocommit": True}
    ) as pool:
        collector = Collector(settings, source, pool, Spool(tmp_path, max_bytes=2**20))
        collector.backlog.start()
        await collector.collect(now - MINUTE)
        await collector.collect(now)

        async def ranked() -> bool:
            return 6 == await count(conn, "SELECT count(*) FROM rankings")

        try:
            await until(ranked, 30, "the ranking of both cycles stored")
        finally:
            await collector.stop()

    candles = await conn.execute("SELECT count(DISTINCT market_id), sum(count) FROM candles_5m")
    assert (6, 12) == await candles.fetchone()
