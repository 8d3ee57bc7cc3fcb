"""/prices from the windows kept in memory: the same bytes as from SQL, moved forward by each
write, within their memory bound, and with HTTP validators."""

import asyncio
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from collector.ticks import Tick
from collector.writer import TickWriter
from datatracker.settings import Settings, load_settings
from tests.api_server import serve_api, until_cache_listens
from tests.integration.history import (
    EXCHANGES,
    HISTORY_END,
    simulated_history,
)

STDDEV_SAMP = """
SELECT stddev_samp(price) FROM prices
WHERE exchange = %s AND symbol = %s AND time >= now() - interval '24 hours' AND time <= now()
"""


def hot_settings(api_url: str, **overrides: object) -> Settings:
    return load_settings(_env_file=None, database_url=api_url, **overrides)


@pytest.fixture
async def hot_api(history: str, api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API with its windows (the default), over the simulated history."""
    async with serve_api(hot_settings(api_url)) as client:
        await until_cache_listens(client)
        yield client


async def pairs(history: str) -> list[tuple[str, str]]:
    async with await psycopg.AsyncConnection.connect(history) as conn:
        cursor = await conn.execute("SELECT exchange, symbol FROM markets ORDER BY 1, 2")
        return [(exchange, symbol) for exchange, symbol in await cursor.fetchall()]


async def windows_held(api: httpx.AsyncClient) -> tuple[int, float]:
    health = (await api.get("/health")).json()
    return health["price_windows"], health["price_windows_mb"]


async def write_cycle(collector_url: str, at: datetime, price: float) -> None:
    """A cycle as the collector writes it (as its role, naming its span), of every stored pair."""
    ticks = [
        Tick(at, exchange, symbol, symbol[:3].upper(), symbol[3:].upper(), price)
        for exchange, symbol in await pairs(collector_url)
    ]
    writer = TickWriter()
    async with (
        await psycopg.AsyncConnection.connect(collector_url) as conn,
        writer.transaction(conn),
    ):
        await writer.write(conn, ticks)


async def test_a_window_answers_byte_for_byte_as_sql_with_stddev_samp(
    hot_api: httpx.AsyncClient, history_api: httpx.AsyncClient, history: str
) -> None:
    """Every pair, read twice from its window, is the answer read from SQL alone (windows off),
    and its stdv is SQL's stddev_samp of those prices to 1e-9."""
    async with await psycopg.AsyncConnection.connect(history) as conn:
        for exchange, symbol in await pairs(history):
            path = f"/prices/{exchange}/{symbol}"
            first, again = await hot_api.get(path), await hot_api.get(path)
            from_sql = await history_api.get(path)
            assert 200 == first.status_code == from_sql.status_code
            assert first.content == again.content == from_sql.content
            assert first.headers["etag"] == from_sql.headers["etag"]
            row = await (await conn.execute(STDDEV_SAMP, (exchange, symbol))).fetchone()
            assert row is not None
            assert first.json()["stdv"] == pytest.approx(row[0], rel=1e-9)
    assert len(await pairs(history)) == (await windows_held(hot_api))[0]


async def newest_price(api: httpx.AsyncClient, path: str) -> tuple[float, datetime]:
    newest = (await api.get(path)).json()["prices"][-1]
    return newest["price"], datetime.fromisoformat(newest["updated_at"])


async def test_a_collector_write_moves_the_windows_forward_without_dropping_them(
    hot_api: httpx.AsyncClient, history: str, collector_url: str
) -> None:
    """Each cycle the writer commits is in every pair's answer once announced (one change for
    all pairs, so as soon as one shows it all do); the windows are advanced in place (all still
    held), each ETag changing with its body."""
    paths = [f"/prices/{exchange}/{symbol}" for exchange, symbol in await pairs(history)]
    tags = {path: (await hot_api.get(path)).headers["etag"] for path in paths}
    for step in range(1, 4):
        cycle = (1000.0 + step, HISTORY_END + step * timedelta(seconds=15))
        await write_cycle(collector_url, cycle[1], cycle[0])
        for _ in range(40):  # the announcement's delivery
            if await newest_price(hot_api, paths[0]) == cycle:
                break
            await asyncio.sleep(0.05)
        assert len(paths) == (await windows_held(hot_api))[0]  # none dropped and read again
        for path in paths:
            response = await hot_api.get(path)
            assert cycle == await newest_price(hot_api, path)
            assert tags[path] != response.headers["etag"]
            tags[path] = response.headers["etag"]


async def test_a_write_from_psql_drops_the_windows_and_they_are_loaded_again_in_bulk(
    hot_api: httpx.AsyncClient, history: str
) -> None:
    """A write that names no span (here plain SQL) is seen at once: the windows are dropped and
    every pair's loaded again in one bulk load, as at start."""
    exchange, symbol = (await pairs(history))[0]
    path = f"/prices/{exchange}/{symbol}"
    await until_loaded(hot_api, len(await pairs(history)), loads=1)
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as conn:
        await conn.execute("UPDATE ticks SET price = 4242 WHERE time = %s", [HISTORY_END])
    assert 4242 == (await hot_api.get(path)).json()["prices"][-1]["price"]
    await until_loaded(hot_api, len(await pairs(history)), loads=2)


async def until_loaded(api: httpx.AsyncClient, pairs: int, loads: int) -> None:
    """Wait (at most 5 s) until `loads` bulk loads have begun and `pairs` windows are held."""
    health: dict[str, object] = {}
    for _ in range(100):
        health = (await api.get("/health")).json()
        if (health["price_window_loads"], health["price_windows"]) == (loads, pairs):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not loaded: {health}")


async def test_windows_stay_within_their_bound_and_the_rest_is_read_from_sql(
    history: str, history_api: httpx.AsyncClient, api_url: str
) -> None:
    """With room for a few windows of the eight pairs, some are held, never more than the
    bound, and every pair still answers as SQL does, twice over."""
    bound_mb = 0.08  # ~84 kB: a shared array of times, and prices and an answer for a few
    async with serve_api(hot_settings(api_url, api_windows_mb=bound_mb)) as api:
        await until_cache_listens(api)
        for _ in range(2):
            for exchange, symbol in await pairs(history):
                path = f"/prices/{exchange}/{symbol}"
                assert (await history_api.get(path)).content == (await api.get(path)).content
                held, held_mb = await windows_held(api)
                assert held_mb <= bound_mb
    assert 0 < held < len(await pairs(history))


async def test_validators_answer_304_and_cache_until_the_next_cycle(
    hot_api: httpx.AsyncClient, history: str
) -> None:
    """An If-None-Match naming the current ETag gets 304 with no body; Cache-Control lasts
    no longer than to the next minute; Last-Modified is the newest price's time."""
    exchange, symbol = (await pairs(history))[0]
    path = f"/prices/{exchange}/{symbol}"
    first = await hot_api.get(path)
    tag = first.headers["etag"]

    again = await hot_api.get(path, headers={"If-None-Match": f'"other", W/{tag}'})
    other = await hot_api.get(path, headers={"If-None-Match": '"other"'})

    assert (304, b"") == (again.status_code, again.content)
    assert tag == again.headers["etag"]
    assert (200, first.content) == (other.status_code, other.content)
    max_age = int(first.headers["cache-control"].removeprefix("max-age="))
    assert 0 <= max_age <= 60 - datetime.now(UTC).second + 1
    newest = datetime.fromisoformat(first.json()["prices"][-1]["updated_at"])
    assert newest.strftime("%a, %d %b %Y %H:%M:%S GMT") == first.headers["last-modified"]


async def test_the_etag_is_the_same_in_every_worker(history: str, api_url: str) -> None:
    """Two API processes' worth of state (two apps) give one pair the same ETag and bytes."""
    exchange, symbol = EXCHANGES[0], (await simulated_history())[0].symbol
    path = f"/prices/{exchange}/{symbol}"
    async with serve_api(hot_settings(api_url)) as one, serve_api(hot_settings(api_url)) as two:
        await until_cache_listens(one)
        await until_cache_listens(two)
        first, second = await one.get(path), await two.get(path)
    assert 200 == first.status_code
    assert (first.headers["etag"], first.content) == (second.headers["etag"], second.content)


async def test_gzip_is_served_to_clients_that_accept_it(
    hot_api: httpx.AsyncClient, history: str
) -> None:
    """The same answer, gzip-coded for a client that accepts it (a representation with its own
    ETag), plain for one that does not; Vary names Accept-Encoding; each tag gets its 304."""
    exchange, symbol = (await pairs(history))[0]
    path = f"/prices/{exchange}/{symbol}"
    plain = await hot_api.get(path, headers={"Accept-Encoding": "identity"})
    refused = await hot_api.get(path, headers={"Accept-Encoding": "br, gzip;q=0"})
    async with hot_api.stream("GET", path, headers={"Accept-Encoding": "br, gzip"}) as coded:
        raw = b"".join([chunk async for chunk in coded.aiter_raw()])

    assert "content-encoding" not in plain.headers
    assert (plain.content, plain.headers["etag"]) == (refused.content, refused.headers["etag"])
    assert "gzip" == coded.headers["content-encoding"]
    assert zlib.decompress(raw, 31) == plain.content
    assert len(raw) < len(plain.content) / 5
    assert coded.headers["etag"] == plain.headers["etag"][:-1] + '-gzip"'
    assert "Accept-Encoding" == plain.headers["vary"] == coded.headers["vary"]
    for tag in (plain.headers["etag"], coded.headers["etag"]):
        again = await hot_api.get(path, headers={"If-None-Match": tag})
        assert 304 == again.status_code


async def test_an_answer_sent_before_routing_is_the_one_the_route_sends(
    hot_api: httpx.AsyncClient, history: str
) -> None:
    """A held pair's answer, sent by api/asgi.py before Litestar routes the request, has the
    status, headers and bytes Litestar's /prices route sends (reached here through a trailing
    slash, which only Litestar's routing takes): plain, gzip-coded, 304 and HEAD."""
    exchange, symbol = (await pairs(history))[0]
    path = f"/prices/{exchange}/{symbol}"
    tag = (await hot_api.get(path)).headers["etag"]
    requests = [
        ("GET", {"Accept-Encoding": "identity"}),
        ("GET", {"Accept-Encoding": "gzip"}),
        ("GET", {"If-None-Match": tag}),
        ("HEAD", {"Accept-Encoding": "identity"}),
    ]
    for method, headers in requests:
        early = await hot_api.request(method, path, headers=headers)
        routed = await hot_api.request(method, path + "/", headers=headers)
        assert early.status_code in (200, 304)
        assert (early.status_code, early.content) == (routed.status_code, routed.content)
        assert without_date(early.headers) == without_date(routed.headers)


def without_date(headers: httpx.Headers) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers.multi_items() if name != "date"]


async def test_a_host_header_litestar_refuses_gets_its_400_for_a_held_pair(
    hot_api: httpx.AsyncClient, history: str
) -> None:
    exchange, symbol = (await pairs(history))[0]
    response = await hot_api.get(f"/prices/{exchange}/{symbol}", headers={"Host": "bad host"})
    assert 400 == response.status_code
