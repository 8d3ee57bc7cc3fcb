"""Fixtures of the integration tests: simulated history written and kept up as the collector
does it, the API reading it as its own role, a cuttable path to the database."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from collector.ticks import Tick
from collector.writer import write_ticks
from datatracker.settings import load_settings
from tests.api_server import serve_api, until_cache_listens
from tests.integration.history import (
    refresh_candles,
    refresh_rankings,
    settings_for,
    simulated_history,
    write_history,
)
from tests.integration.test_prices_hot import pairs, until_loaded
from tests.tcp_proxy import TcpProxy

# The pair `one_price` writes, as /prices names it.
ONE_PRICE = "/prices/kraken/btcusd"


@pytest.fixture
async def history(database_url: str, collector_url: str) -> str:
    """The test's database (superuser URL) once the collector has written the simulated
    history, brought the candles up to date and ranked it, all as the role `collector`."""
    async with await psycopg.AsyncConnection.connect(collector_url, autocommit=True) as conn:
        await write_history(conn, await simulated_history())
    await refresh_candles(database_url)
    await refresh_rankings(database_url)
    return database_url


@pytest.fixture
async def one_price(conn: psycopg.AsyncConnection, now: datetime) -> None:
    """kraken BTC/USD (ONE_PRICE) has a price a minute old."""
    await write_ticks(
        conn, [Tick(now - timedelta(minutes=1), "kraken", "btcusd", "BTC", "USD", 1.0)]
    )


@pytest.fixture
async def history_api(history: str, api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API over HTTP, as the role `api`, reading the database with the simulated history."""
    async with serve_api(settings_for(api_url)) as client:
        yield client


@pytest.fixture
async def loaded_api(history: str, api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API with its default settings (price windows and response cache), as the role
    `api`, over the simulated history, once every pair's window is held (the first bulk
    load)."""
    async with serve_api(load_settings(_env_file=None, database_url=api_url)) as client:
        await until_cache_listens(client)
        await until_loaded(client, len(await pairs(history)), loads=1)
        yield client


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    """A cuttable TCP path to the test's database: `proxy.route(database_url)` goes through it."""
    params = conninfo_to_dict(database_url)
    async with TcpProxy(str(params.get("host", "127.0.0.1")), int(params.get("port", 5432))) as p:
        yield p


@pytest.fixture
def now() -> datetime:
    """This test's present, to the second: the 24-hour window is relative to it."""
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def api(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API with its default settings, served over HTTP on 127.0.0.1 and reading the test's
    database as the role `api`, once its response cache listens for changes."""
    async with serve_api(load_settings(_env_file=None, database_url=api_url)) as client:
        await until_cache_listens(client)
        yield client
