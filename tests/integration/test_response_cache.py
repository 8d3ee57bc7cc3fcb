"""The API's response cache: bodies are kept until the data changes, and never past it."""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from api.cache import CHECK_SECONDS
from collector.ticks import Tick
from collector.writer import write_ticks
from datatracker.settings import load_settings
from tests.api_server import serve_api, until_cache_listens
from tests.integration.history import refresh_candles, refresh_rankings
from tests.tcp_proxy import TcpProxy

PRICES = "/prices/kraken/btcusd"


def btc(at: datetime, price: float) -> Tick:
    return Tick(at, "kraken", "btcusd", "BTC", "USD", price)


async def prices(api: httpx.AsyncClient) -> list[float]:
    response = await api.get(PRICES)
    assert 200 == response.status_code, response.text
    return [point["price"] for point in response.json()["prices"]]


async def eventually_prices(api: httpx.AsyncClient, expected: list[float]) -> list[float]:
    """The prices served once they equal `expected`, or the last ones after 2 s (503s, while
    the API reconnects, are waited out)."""
    served: list[float] = []
    for _ in range(40):
        response = await api.get(PRICES)
        if response.status_code == 200:
            served = [point["price"] for point in response.json()["prices"]]
            if served == expected:
                break
        await asyncio.sleep(0.05)
    return served


async def test_a_repeated_read_is_served_from_the_cache(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """With the change announcement switched off, a write stays unseen: the body was kept."""
    await write_ticks(conn, [btc(now - timedelta(minutes=1), 100.0)])
    await asyncio.sleep(CHECK_SECONDS + 0.1)  # the listener has seen the new chunk
    assert [100.0] == await prices(api)

    await conn.execute("DROP TRIGGER ticks_changed ON ticks")
    await write_ticks(conn, [btc(now, 101.0)])

    assert [100.0] == await prices(api)


async def test_a_write_is_served_once_announced(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """Any statement that writes ticks (here plain SQL, as a person at psql would) clears it."""
    await write_ticks(conn, [btc(now - timedelta(minutes=1), 100.0)])
    assert [100.0] == await prices(api)

    await conn.execute(
        "INSERT INTO ticks (time, market_id, price) SELECT %s, id, 101 FROM markets", [now]
    )

    assert [100.0, 101.0] == await eventually_prices(api, [100.0, 101.0])


async def test_a_kept_body_expires_when_its_oldest_price_leaves_the_window(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """No write happens, yet the price that turns 24 hours old drops out of the next answer."""
    leaving = datetime.now(UTC) - timedelta(hours=24) + timedelta(seconds=2.5)
    await write_ticks(conn, [btc(leaving, 100.0), btc(now, 101.0)])
    assert [100.0, 101.0] == await prices(api)

    await asyncio.sleep(3)

    assert [101.0] == await prices(api)


async def test_a_ranking_refresh_is_served_once_announced(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, database_url: str, now: datetime
) -> None:
    """/rankings and the rank in /prices follow the stored ranking's refresh."""
    minutes = [now - timedelta(minutes=m) for m in (3, 2, 1)]
    await write_ticks(conn, [btc(at, 100.0 + i) for i, at in enumerate(minutes)])
    await refresh_candles(database_url, since=minutes[0])
    assert 0 == (await api.get("/rankings")).json()["ranked"]
    assert (await api.get(PRICES)).json()["rank"] is None

    await refresh_rankings(database_url)

    for _ in range(40):
        if (await api.get("/rankings")).json()["ranked"] == 1:
            break
        await asyncio.sleep(0.05)
    assert 1 == (await api.get("/rankings")).json()["ranked"]
    assert 1 == (await api.get(PRICES)).json()["rank"]


async def test_a_ranking_refresh_keeps_the_prices(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, database_url: str, now: datetime
) -> None:
    """A refresh announces only the ranking: /prices reads its new rank, not its prices again
    (shown here with a write that the ticks' announcement, dropped, does not tell)."""
    minutes = [now - timedelta(minutes=m) for m in (3, 2, 1)]
    await write_ticks(conn, [btc(at, 100.0 + i) for i, at in enumerate(minutes)])
    await refresh_candles(database_url, since=minutes[0])
    await asyncio.sleep(CHECK_SECONDS + 0.1)  # the listener has seen the new chunk
    before = (await api.get(PRICES)).json()
    await conn.execute("DROP TRIGGER ticks_changed ON ticks")
    await write_ticks(conn, [btc(now, 103.0)])

    await refresh_rankings(database_url)

    for _ in range(40):
        after = (await api.get(PRICES)).json()
        if after["rank"] == 1:
            break
        await asyncio.sleep(0.05)
    assert (None, 1) == (before["rank"], after["rank"])
    assert before["prices"] == after["prices"]


async def test_nothing_is_served_from_the_cache_while_the_database_is_away(
    proxy: TcpProxy, database_url: str, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """A kept body could miss a change made while nobody listened: 503 instead, then fresh."""
    await write_ticks(conn, [btc(now - timedelta(minutes=1), 100.0)])
    settings = load_settings(_env_file=None, database_url=proxy.route(database_url))
    async with serve_api(settings) as api:
        await until_cache_listens(api)
        assert [100.0] == await prices(api)

        await proxy.cut()
        # Answers may still come from the cache in the instant before it learns that its
        # connection is gone; then 503.
        during = (await api.get(PRICES)).status_code
        for _ in range(40):
            if during == 503:
                break
            await asyncio.sleep(0.05)
            during = (await api.get(PRICES)).status_code
        await write_ticks(conn, [btc(now, 101.0)])  # unannounced to the API: it is cut off
        await proxy.restore()

        assert 503 == during
        assert [100.0, 101.0] == await eventually_prices(api, [100.0, 101.0])
