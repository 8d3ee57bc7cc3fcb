"""The response cache sees every change the project makes, not only writes to ticks: market
renames and deletions, chunk drops and compression, and a listener that stops answering."""

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from api.cache import CHECK_SECONDS, TRUSTED_SECONDS
from collector.ticks import Tick
from collector.writer import write_ticks

PRICES = "/prices/kraken/btcusd"


def btc(at: datetime, price: float) -> Tick:
    return Tick(at, "kraken", "btcusd", "BTC", "USD", price)


def before_midnight() -> datetime:
    """A minute before today's UTC midnight: inside the 24-hour window, in yesterday's chunk
    (ticks has one chunk per UTC day)."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        minutes=1
    )


async def served(api: httpx.AsyncClient, path: str = PRICES) -> list[float] | int:
    """The prices of `path`, or its status when it is not 200."""
    response = await api.get(path)
    if response.status_code != 200:
        return response.status_code
    return [point["price"] for point in response.json()["prices"]]


async def eventually(
    api: httpx.AsyncClient, expected: list[float] | int, path: str = PRICES, within: float = 2.0
) -> list[float] | int:
    """What `path` serves once it is `expected`, or after `within` seconds."""
    deadline = time.monotonic() + within
    answer = await served(api, path)
    while answer != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        answer = await served(api, path)
    return answer


async def keep_unannounced(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, write: Tick, kept: list[float]
) -> None:
    """Switch the ticks' announcement off and write `write` (into a chunk that exists): the
    cache goes on serving `kept`, so that what shows the new tick afterwards is what the test
    makes the cache see."""
    await asyncio.sleep(CHECK_SECONDS + 0.1)  # the listener has seen the new chunks
    assert kept == await served(api)
    await conn.execute("DROP TRIGGER ticks_changed ON ticks")
    await write_ticks(conn, [write])
    await asyncio.sleep(CHECK_SECONDS + 0.1)
    assert kept == await served(api)


async def test_a_renamed_market_is_no_longer_found_by_its_old_name(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """After UPDATE markets SET symbol, the old name is 404 and the new one finds the prices."""
    await write_ticks(conn, [btc(now - timedelta(minutes=1), 100.0)])
    assert [100.0] == await served(api)

    await conn.execute("UPDATE markets SET symbol = 'xbtusd' WHERE symbol = 'btcusd'")

    assert 404 == await eventually(api, 404)
    assert [100.0] == await served(api, "/prices/kraken/xbtusd")


async def test_a_deleted_market_is_404(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """After DELETE FROM markets, its pair is unknown at once, though its ticks remain."""
    await write_ticks(conn, [btc(now - timedelta(minutes=1), 100.0)])
    assert [100.0] == await served(api)

    await conn.execute("DELETE FROM markets WHERE symbol = 'btcusd'")

    assert 404 == await eventually(api, 404)


async def test_prices_in_chunks_dropped_by_drop_chunks_are_no_longer_served(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """drop_chunks fires no trigger; the listener sees the chunk gone within a check."""
    await write_ticks(conn, [btc(before_midnight(), 100.0), btc(now, 101.0)])
    assert [100.0, 101.0] == await served(api)

    await conn.execute("SELECT drop_chunks('ticks', older_than => date_trunc('day', now()))")

    assert [101.0] == await eventually(api, [101.0], within=1.0)


async def test_a_pair_whose_every_chunk_is_dropped_is_404(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """Once drop_chunks has taken every price of the window, /prices says 404 (no price in the
    last 24 hours), not the answer it kept."""
    await write_ticks(conn, [btc(now - timedelta(minutes=1), 100.0)])
    await asyncio.sleep(CHECK_SECONDS + 0.1)  # the listener has seen the new chunk
    assert [100.0] == await served(api)

    await conn.execute("SELECT drop_chunks('ticks', older_than => now() + interval '1 day')")

    assert 404 == await eventually(api, 404, within=1.0)


@pytest.mark.edition("timescale")
async def test_chunks_dropped_by_the_retention_policy_are_seen(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """A run of TimescaleDB's retention policy job, which no trigger announces, is seen."""
    await write_ticks(conn, [btc(before_midnight(), 100.0), btc(now, 101.0)])
    assert [100.0, 101.0] == await served(api)
    job = await (
        await conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention' AND hypertable_name = 'ticks'"
        )
    ).fetchone()
    assert job is not None
    # Today's chunk ends tomorrow and stays; yesterday's ended at midnight and goes.
    await conn.execute(
        "SELECT alter_job(job_id, config => jsonb_set(config, '{drop_after}', '\"1 second\"'))"
        " FROM timescaledb_information.jobs WHERE job_id = %s",
        [job[0]],
    )

    await conn.execute("CALL run_job(%s)", [job[0]])

    assert [101.0] == await eventually(api, [101.0], within=1.0)


@pytest.mark.edition("timescale")
async def test_a_compressed_chunk_drops_nothing_kept(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """Compressing a chunk (as the compression policy does) changes no value, so nothing kept
    is dropped: a write made unannounced beforehand stays unseen."""
    await write_ticks(conn, [btc(before_midnight(), 100.0), btc(now - timedelta(minutes=2), 100.5)])
    await keep_unannounced(api, conn, btc(now - timedelta(minutes=1), 101.0), [100.0, 100.5])

    await conn.execute(
        "SELECT compress_chunk(c) FROM show_chunks('ticks', older_than => date_trunc('day', now()))"
        " AS c"
    )

    await asyncio.sleep(2 * CHECK_SECONDS + 0.2)
    assert [100.0, 100.5] == await served(api)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The server process `pid` stopped (SIGSTOP) until the block ends: it keeps its socket
    open and answers nothing, as a hung server or a silent network would."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def listener_pid(conn: psycopg.AsyncConnection) -> int:
    """The server process of the API cache's listening connection, when it runs on this
    machine (skip otherwise: a container's process cannot be stopped from here)."""
    row = await (
        await conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = 'datatracker-api-cache' AND datname = current_database()"
        )
    ).fetchone()
    assert row is not None
    if not is_local_postgres(int(row[0])):
        pytest.skip("the database server does not run on this machine")
    return int(row[0])


def is_local_postgres(pid: int) -> bool:
    """Whether `pid` is a PostgreSQL process of this machine."""
    command = Path(f"/proc/{pid}/cmdline")
    return command.exists() and b"postgres" in command.read_bytes()


async def test_a_frozen_listener_stops_the_cache_within_its_bound(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """With its listener's server process stopped, the API serves from the database again
    within 2 s, so a write it was not told of shows; /health says it no longer listens."""
    await write_ticks(conn, [btc(now - timedelta(minutes=1), 100.0)])
    await asyncio.sleep(CHECK_SECONDS + 0.1)  # the listener has seen the new chunk
    assert [100.0] == await served(api)
    pid = await listener_pid(conn)

    with frozen(pid):
        stopped = time.monotonic()
        await write_ticks(conn, [btc(now, 101.0)])  # announced, but nobody reads it
        answer = await eventually(api, [100.0, 101.0], within=3.0)
        elapsed = time.monotonic() - stopped
        status = (await api.get("/health")).json()["response_cache"]

    assert [100.0, 101.0] == answer
    assert elapsed <= 2.0, f"served from memory for {elapsed:.2f} s"
    assert TRUSTED_SECONDS < 2.0
    assert "not listening" == status
