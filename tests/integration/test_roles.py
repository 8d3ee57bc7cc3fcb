"""What the deployment's roles may and may not do, on the edition of the run.

The collector logs in as `collector` (group tracker_writer), the API as `api` and Grafana as
`grafana` (group tracker_reader), as db/create-users.sh makes them.
"""

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from collector.ticks import Tick
from collector.writer import write_ticks
from tests.api_server import serve_api
from tests.commands import run_python
from tests.integration.comparing import mismatches
from tests.integration.history import api_settings, refresh_candles
from tests.integration.privileges import refused
from tests.integration.retention import chunk_edges, run_jobs

PAIRS = 5
# What the collector may not do to stored data: horizons of its own, drop_chunks, DELETE,
# UPDATE, TRUNCATE, DDL, the stored settings.
WRITER_REFUSED = (
    "SELECT apply_retention('-1 day', '-1 day', '-1 day')",
    "SELECT drop_chunks('ticks', older_than => now() + interval '1 day')",
    "DELETE FROM ticks",
    "UPDATE ticks SET price = 1",
    "TRUNCATE ticks",
    "DROP TABLE ticks",
    "UPDATE storage_settings SET raw_retention = '2 days'",
)
# What a reader may not do even with its read-only default lifted: any write or DDL.
READER_REFUSED = (
    "INSERT INTO markets (exchange, symbol, base, quote, first_seen, last_seen)"
    " VALUES ('x', 'xusd', 'X', 'USD', now(), now())",
    "DELETE FROM ticks",
    "UPDATE rankings SET stdv = 0",
    "TRUNCATE collector_runs",
    "CREATE TABLE mine (x int)",
    "SELECT refresh_rankings()",
    "SELECT apply_retention()",
    "SELECT configure_storage(NULL, NULL, NULL, NULL)",
)


async def rows(url: str, query: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await (await conn.execute(query)).fetchall()  # type: ignore[arg-type]


def run_collector(
    collector_url: str, workdir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m collector ARGS` as the role `collector` on simulated prices."""
    env = {
        **os.environ,
        "DATABASE_URL": collector_url,
        "PRICE_SOURCE": "simulated",
        "SUPPORTED_EXCHANGES": "kraken,binance",
        "SIMULATED_PAIRS_PER_EXCHANGE": str(PAIRS),
    }
    return run_python(["-m", "collector", *args], workdir, env, timeout=300)


@pytest.mark.slow
async def test_a_backfill_as_the_collector_agrees_with_prices_after_every_job(
    collector_url: str, database_url: str, tmp_path: Path
) -> None:
    """`collector backfill --hours 24` as `collector` exits 0; after TimescaleDB's jobs have all
    run, every pair's ranking equals /prices and the hourly candles cover the 24 hours."""
    backfill = run_collector(collector_url, tmp_path, "backfill", "--hours", "24")
    await run_jobs(database_url)

    async with serve_api(api_settings(database_url)) as api:
        problems = await mismatches(api)
        ranked = (await api.get("/rankings")).json()["ranked"]
        candles = (
            await api.get("/prices/kraken/btcusd/candles", params={"interval": "1h"})
        ).json()["candles"]

    assert 0 == backfill.returncode, backfill.stderr
    assert ([], 2 * PAIRS) == (problems, ranked)
    assert 24 <= len(candles) <= 25
    assert 60 * 24 - 1 <= sum(candle["count"] for candle in candles) <= 60 * 24 + 1


async def test_the_collector_refreshes_a_window_shorter_than_a_bucket(
    collector_url: str, database_url: str
) -> None:
    """Bringing the candles up to date after a minute of cycles (a window inside one bucket)
    succeeds as `collector`: a refresh covers whole buckets or none."""
    now = datetime.now(UTC)
    ticks = [
        Tick(now - timedelta(seconds=s), "kraken", "btcusd", "BTC", "USD", 1.0 + s)
        for s in (50, 20)
    ]
    async with await psycopg.AsyncConnection.connect(collector_url, autocommit=True) as conn:
        await write_ticks(conn, ticks)

    await refresh_candles(database_url, since=now - timedelta(minutes=1))

    assert [(2,)] == await rows(database_url, "SELECT sum(count)::int FROM candles_5m")


async def test_the_collector_cannot_drop_data_younger_than_the_retention(
    collector_url: str, database_url: str
) -> None:
    """As `collector`, retention drops exactly the chunks past the stored horizon; horizons of
    its own, drop_chunks, DELETE and UPDATE are all refused."""
    horizon = datetime.now(UTC) - timedelta(days=7)
    edges = chunk_edges(horizon)
    old = [
        Tick(moment, "kraken", "btcusd", "BTC", "USD", float(n))
        for n, moment in enumerate(edges.ticks, start=1)
    ]
    # Ticks older than the horizon: only the owner may still write them (migration 0006).
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await write_ticks(conn, old)
    async with await psycopg.AsyncConnection.connect(collector_url, autocommit=True) as conn:
        refusals = await refused(
            conn,
            WRITER_REFUSED,
            psycopg.errors.InsufficientPrivilege,
            psycopg.errors.UndefinedFunction,
        )
        await conn.execute("SELECT apply_retention()")

    assert list(WRITER_REFUSED) == refusals
    assert [(price,) for price in edges.kept_prices] == await rows(
        database_url, "SELECT price FROM ticks ORDER BY price"
    )


@pytest.mark.parametrize("role", ["api", "grafana"])
async def test_a_reader_that_lifts_its_read_only_default_still_cannot_write(
    database_url: str, role: str
) -> None:
    """PostgreSQL lets any role change its own defaults; a reader that turns read-only off
    still holds SELECT alone: every write and every DDL is refused."""
    from tests.conftest import as_role

    url = as_role(database_url, role)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SET default_transaction_read_only = off")
        refusals = await refused(conn, READER_REFUSED)
        readable = await (await conn.execute("SELECT count(*) FROM prices")).fetchone()

    assert list(READER_REFUSED) == refusals
    assert (0,) == readable


async def test_the_readers_read_every_table_they_serve(api_url: str, grafana_url: str) -> None:
    """The API's and Grafana's roles read the tables, views and functions they query."""
    query = (
        "SELECT (SELECT count(*) FROM prices) + (SELECT count(*) FROM candles_5m)"
        " + (SELECT count(*) FROM candles_1h) + (SELECT count(*) FROM rankings)"
        " + (SELECT count(*) FROM collector_runs) + (SELECT count(*) FROM volatility_ranking())"
        " + (SELECT count(*) FROM storage_settings) - 1"
    )
    for url in (api_url, grafana_url):
        assert [(0,)] == await rows(url, query)
