"""The Apache-2 edition: candle tables rolled up by the collector, retention by drop_chunks;
the collector as the role `collector`. Every test here runs on that edition only."""

import math
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from collector.maintenance import Maintenance
from collector.ticks import Tick
from collector.writer import write_ticks
from datatracker.database import create_pool
from tests.integration.history import settings_for
from tests.integration.privileges import refused
from tests.integration.retention import chunk_edges

pytestmark = pytest.mark.edition("apache")

# The Timescale-License features: continuous aggregates, compression, policies.
LICENSED_FEATURES = (
    "CREATE MATERIALIZED VIEW c WITH (timescaledb.continuous) AS SELECT"
    " time_bucket('1 hour', time) AS b, avg(price) FROM ticks GROUP BY 1 WITH NO DATA",
    "ALTER TABLE ticks SET (timescaledb.compress)",
    "SELECT add_retention_policy('ticks', INTERVAL '7 days')",
    "SELECT add_compression_policy('ticks', INTERVAL '1 day')",
)

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


async def test_rollups_equal_aggregates_of_the_raw_ticks(history: str) -> None:
    """The rolled-up 5-minute and hourly candles equal the same aggregates over raw ticks."""
    async with await psycopg.AsyncConnection.connect(history) as conn:
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


async def test_retention_drops_exactly_the_chunks_past_the_horizon(
    collector_url: str, database_url: str
) -> None:
    """The collector's retention drops the tick chunks that ended RAW_RETENTION ago, whatever
    the time of day, and no other."""
    edges = chunk_edges(datetime.now(UTC) - timedelta(days=7))
    old = [
        Tick(moment, "kraken", "btcusd", "BTC", "USD", float(n))
        for n, moment in enumerate(edges.ticks, start=1)
    ]
    settings = settings_for(collector_url)
    pool = create_pool(collector_url, max_size=1, name="test")
    await pool.open(wait=True)
    # Ticks older than the horizon: only the owner may still write them (migration 0006).
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await write_ticks(conn, old)
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT show_chunks('ticks')::text ORDER BY 1")
        before = [row[0] for row in await cursor.fetchall()]

    dropped = await Maintenance(settings, pool, "apache").drop_expired_chunks()

    async with pool.connection() as conn:
        after = await (
            await conn.execute("SELECT show_chunks('ticks')::text ORDER BY 1")
        ).fetchall()
        prices = await (await conn.execute("SELECT price FROM ticks ORDER BY 1")).fetchall()
    await pool.close()
    assert edges.expired_chunks == dropped
    assert before[edges.expired_chunks :] == [row[0] for row in after]
    assert [(price,) for price in edges.kept_prices] == prices


async def test_timescale_mode_leaves_the_upkeep_to_the_database(
    collector_url: str, database_url: str
) -> None:
    """Maintenance in timescale mode neither rolls up nor drops anything."""
    settings = settings_for(collector_url)
    pool = create_pool(collector_url, max_size=1, name="test")
    await pool.open(wait=True)
    tick = Tick(datetime.now(UTC) - timedelta(days=30), "kraken", "btcusd", "BTC", "USD", 1.0)
    # Older than the horizon: only the owner may still write it (migration 0006).
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await write_ticks(conn, [tick])
    maintenance = Maintenance(settings, pool, "timescale")

    await maintenance.roll_up(tick.time)
    dropped = await maintenance.drop_expired_chunks()

    async with pool.connection() as conn:
        counts = await conn.execute("SELECT (SELECT count(*) FROM ticks), count(*) FROM candles_5m")
        assert (0, (1, 0)) == (dropped, await counts.fetchone())
    await pool.close()


async def test_the_edition_refuses_the_timescale_license_features(
    conn: psycopg.AsyncConnection,
) -> None:
    """This edition refuses continuous aggregates, compression and policies, as the Apache-2
    build does: the stand-in `timescaledb.license = 'apache'` stands in faithfully."""
    refusals = await refused(
        conn,
        LICENSED_FEATURES,
        psycopg.errors.FeatureNotSupported,
        psycopg.errors.InsufficientPrivilege,
    )

    assert list(LICENSED_FEATURES) == refusals


async def test_health_reports_apache_mode_without_compression(
    history_api: httpx.AsyncClient,
) -> None:
    """/health on the Apache edition says apache mode, compression unavailable."""
    body = (await history_api.get("/health")).json()

    assert ("apache", "unavailable") == (body["storage_mode"], body["compression"])
