"""The Apache-2 fallback: candle tables rolled up by the collector, retention by drop_chunks."""

import math
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from collector.cycle import cycle_instant
from collector.maintenance import Maintenance
from collector.service import Collector
from collector.sources.simulated import SimulatedSource
from collector.ticks import Tick
from collector.writer import write_ticks
from datatracker.database import create_pool
from datatracker.storage import StorageMode
from tests.integration.history import settings_for

CANDLES_FROM_TICKS = """
    SELECT time_bucket(%(width)s::interval, time) AS bucket, market_id, first(price, time),
           max(price), min(price), last(price, time), count(*), avg(price),
           var_pop(price) * count(*)
    FROM ticks GROUP BY 1, 2 ORDER BY 2, 1"""


async def test_candles_are_plain_hypertables_without_policies(
    conn: psycopg.AsyncConnection,
) -> None:
    """On the Apache edition the candles are hypertables and no policy job exists."""
    cursor = await conn.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables"
        " WHERE hypertable_name LIKE 'candles%' ORDER BY 1"
    )
    jobs = await conn.execute(
        "SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
    )

    assert [("candles_1h",), ("candles_5m",)] == await cursor.fetchall()
    assert (0,) == await jobs.fetchone()


async def test_rollups_equal_aggregates_of_the_raw_ticks(apache_history: str) -> None:
    """The rolled-up 5-minute and hourly candles equal the same aggregates over raw ticks."""
    async with await psycopg.AsyncConnection.connect(apache_history) as conn:
        for width, table in (("5 minutes", "candles_5m"), ("1 hour", "candles_1h")):
            raw = await (await conn.execute(CANDLES_FROM_TICKS, {"width": width})).fetchall()
            stored = await conn.execute(
                f"SELECT * FROM {table} ORDER BY market_id, bucket"  # type: ignore[arg-type]  # noqa: S608
            )
            rolled = await stored.fetchall()

            assert [row[:2] + row[6:7] for row in raw] == [row[:2] + row[6:7] for row in rolled]
            assert all(
                math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
                for r, s in zip(raw, rolled, strict=True)
                for a, b in zip(r[2:], s[2:], strict=True)
            )


async def test_retention_drops_exactly_the_chunks_past_the_horizon(database_url: str) -> None:
    """The collector's retention drops the tick chunks older than RAW_RETENTION and no other."""
    now = datetime.now(UTC)
    old = [
        Tick(now - timedelta(days=days), "kraken", "btcusd", "BTC", "USD", 1.0 + days)
        for days in (9.5, 8.5, 7.5, 6.5, 5.5)
    ]
    settings = settings_for(database_url)
    pool = create_pool(database_url, max_size=1, name="test")
    await pool.open(wait=True)
    async with pool.connection() as conn:
        await write_ticks(conn, old)
        cursor = await conn.execute("SELECT show_chunks('ticks')::text ORDER BY 1")
        before = [row[0] for row in await cursor.fetchall()]
        cursor = await conn.execute(
            "SELECT show_chunks('ticks', older_than => now() - interval '7 days')::text"
        )
        expired = [row[0] for row in await cursor.fetchall()]

    dropped = await Maintenance(settings, pool, "apache").drop_expired_chunks()

    async with pool.connection() as conn:
        after = await (
            await conn.execute("SELECT show_chunks('ticks')::text ORDER BY 1")
        ).fetchall()
        prices = await (await conn.execute("SELECT price FROM ticks ORDER BY 1")).fetchall()
    await pool.close()
    assert (3, 3) == (len(expired), dropped)
    assert [chunk for chunk in before if chunk not in expired] == [row[0] for row in after]
    assert [(6.5,), (7.5,)] == prices


async def test_timescale_mode_leaves_the_upkeep_to_the_database(database_url: str) -> None:
    """Maintenance in timescale mode neither rolls up nor drops anything."""
    settings = settings_for(database_url)
    pool = create_pool(database_url, max_size=1, name="test")
    await pool.open(wait=True)
    tick = Tick(datetime.now(UTC) - timedelta(days=30), "kraken", "btcusd", "BTC", "USD", 1.0)
    async with pool.connection() as conn:
        await write_ticks(conn, [tick])
    maintenance = Maintenance(settings, pool, "timescale")

    await maintenance.roll_up(tick.time)
    dropped = await maintenance.drop_expired_chunks()

    async with pool.connection() as conn:
        counts = await conn.execute("SELECT (SELECT count(*) FROM ticks), count(*) FROM candles_5m")
        assert (0, (1, 0)) == (dropped, await counts.fetchone())
    await pool.close()


async def test_each_collected_cycle_is_rolled_up_into_the_candles(database_url: str) -> None:
    """A scheduled cycle in Apache mode leaves its ticks' 5-minute and hourly candles current."""
    settings = settings_for(database_url)
    source = SimulatedSource(("kraken",), pairs_per_exchange=3, seed=1)
    pool = create_pool(database_url, max_size=2, name="test")
    await pool.open(wait=True)
    collector = Collector(settings, source, pool, Maintenance(settings, pool, "apache"))

    await collector.collect()

    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT (SELECT sum(count) FROM candles_5m), (SELECT sum(count) FROM candles_1h),"
            " (SELECT count(*) FROM ticks)"
        )
        assert (3, 3, 3) == await cursor.fetchone()
    await pool.close()


@pytest.mark.parametrize("mode", ["apache", "timescale"])
async def test_each_collected_cycle_refreshes_the_stored_ranking(
    database_url: str, mode: StorageMode
) -> None:
    """After a scheduled cycle, in either mode, the stored ranking's window ends after its
    instant and ranks the pairs with two ticks in it."""
    settings = settings_for(database_url)
    source = SimulatedSource(("kraken",), pairs_per_exchange=3, seed=1)
    pool = create_pool(database_url, max_size=2, name="test")
    await pool.open(wait=True)
    at = cycle_instant(datetime.now(UTC), settings.collect_interval_seconds)
    earlier = [
        Tick(at - timedelta(minutes=1), "kraken", pair.symbol, pair.base, pair.quote, pair.price)
        for pair in source.pairs
    ]
    async with pool.connection() as conn:
        await write_ticks(conn, earlier)
    # Candles of the earlier ticks, which a licensed edition's aggregates would hold.
    await Maintenance(settings, pool, "apache").roll_up(earlier[0].time)
    collector = Collector(settings, source, pool, Maintenance(settings, pool, mode))

    await collector.collect()

    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT window_end >= %s, ranked, (SELECT count(*) FROM rankings) FROM rankings_window",
            [at],
        )
        assert (True, 3, 3) == await cursor.fetchone()
    await pool.close()


async def test_health_reports_apache_mode_without_compression(
    apache_api: httpx.AsyncClient,
) -> None:
    """/health on the Apache edition says apache mode, compression unavailable."""
    body = (await apache_api.get("/health")).json()

    assert ("apache", "unavailable") == (body["storage_mode"], body["compression"])
