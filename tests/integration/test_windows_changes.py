"""A change touches only what it changes: the API's windows follow each kind of change to the
stored prices without being dropped and loaded again, and every answer stays the one SQL
gives, byte for byte; only what cannot be understood reloads everything, in bulk."""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from api.cache import CHECK_SECONDS
from collector.ticks import Tick
from collector.writer import TickWriter
from tests.integration.history import HISTORY_END, HISTORY_START
from tests.integration.test_prices_hot import pairs, until_loaded


async def answers(api: httpx.AsyncClient, names: list[tuple[str, str]]) -> dict[str, object]:
    """Each pair's status, ETag and body."""
    found: dict[str, object] = {}
    for exchange, symbol in names:
        response = await api.get(f"/prices/{exchange}/{symbol}")
        found[f"{exchange}/{symbol}"] = (
            response.status_code,
            response.headers.get("etag"),
            response.content,
        )
    return found


async def assert_as_sql(
    hot: httpx.AsyncClient, sql: httpx.AsyncClient, names: list[tuple[str, str]]
) -> dict[str, object]:
    """Every pair answers from the windows as the API without windows answers from SQL."""
    from_windows = await answers(hot, names)
    assert from_windows == await answers(sql, names)
    return from_windows


async def held(api: httpx.AsyncClient) -> tuple[int, int]:
    """The windows held and the bulk loads begun, as /health says."""
    health = (await api.get("/health")).json()
    return health["price_windows"], health["price_window_loads"]


async def after_a_check() -> None:
    """Long enough for the listener to have read the chunks of ticks twice."""
    await asyncio.sleep(2 * CHECK_SECONDS + 0.2)


async def write_as_collector(collector_url: str, ticks: list[Tick]) -> None:
    """One write as the collector's writer makes it, naming its span."""
    writer = TickWriter()
    async with (
        await psycopg.AsyncConnection.connect(collector_url) as conn,
        writer.transaction(conn),
    ):
        await writer.write(conn, ticks)


@pytest.mark.edition("timescale")
async def test_compressing_and_decompressing_a_chunk_drops_nothing(
    loaded_api: httpx.AsyncClient, history_api: httpx.AsyncClient, history: str
) -> None:
    """compress_chunk and decompress_chunk (as the owner) change no value: every window is
    still held, none loaded again, no answer rebuilt (same ETags), all as SQL."""
    names = await pairs(history)
    before = await assert_as_sql(loaded_api, history_api, names)
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as owner:
        await owner.execute(
            "SELECT compress_chunk(c) FROM show_chunks('ticks', older_than => %s) AS c",
            [HISTORY_END],
        )
        await after_a_check()
        assert before == await assert_as_sql(loaded_api, history_api, names)
        await owner.execute(
            "SELECT decompress_chunk(c) FROM show_chunks('ticks', older_than => %s) AS c",
            [HISTORY_END],
        )
        await after_a_check()
    assert before == await assert_as_sql(loaded_api, history_api, names)
    assert (len(names), 1) == await held(loaded_api)


async def test_a_chunk_dropped_wholly_before_the_window_changes_nothing(
    loaded_api: httpx.AsyncClient, history_api: httpx.AsyncClient, history: str, collector_url: str
) -> None:
    """A chunk of ticks three days old, dropped by drop_chunks (as the owner), leaves every
    window and answer as it was."""
    names = await pairs(history)
    old = datetime.now(UTC) - timedelta(days=3)
    exchange, symbol = names[0]
    await write_as_collector(
        collector_url, [Tick(old, exchange, symbol, symbol[:3].upper(), "USD", 1.5)]
    )
    await after_a_check()
    before = await assert_as_sql(loaded_api, history_api, names)
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as owner:
        dropped = await owner.execute(
            "SELECT drop_chunks('ticks', older_than => now() - interval '2 days')"
        )
        assert 1 == len(await dropped.fetchall())
    await after_a_check()
    assert before == await assert_as_sql(loaded_api, history_api, names)
    assert (len(names), 1) == await held(loaded_api)


async def test_a_chunk_dropped_inside_the_window_is_cut_out_of_every_window_at_once(
    loaded_api: httpx.AsyncClient, history_api: httpx.AsyncClient, history: str
) -> None:
    """drop_chunks (as the owner) of the chunk holding the oldest prices of the window, which
    fires no trigger: from the first request after it committed (no wait for the listener's
    periodic check), every window lacks them, none is dropped or loaded again, all answer as
    SQL."""
    names = await pairs(history)
    before = await assert_as_sql(loaded_api, history_api, names)
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as owner:
        dropped = await owner.execute(
            "SELECT drop_chunks('ticks', older_than => date_trunc('day', %s::timestamptz)"
            " + interval '1 day')",
            [HISTORY_START],
        )
        assert 1 == len(await dropped.fetchall())
    after = await assert_as_sql(loaded_api, history_api, names)
    assert before != after
    assert (len(names), 1) == await held(loaded_api)


async def test_retention_dropping_a_chunk_before_the_window_reloads_nothing(
    loaded_api: httpx.AsyncClient, history_api: httpx.AsyncClient, history: str, collector_url: str
) -> None:
    """apply_retention() (the collector's retention, the Apache edition's only one) drops a
    chunk ten days old and announces it as `storage`: every window is still held, none loaded
    again, every answer as it was."""
    names = await pairs(history)
    exchange, symbol = names[0]
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as owner:
        await owner.execute(  # older than the retention: only the owner may write it
            "INSERT INTO ticks (time, market_id, price)"
            " SELECT now() - interval '10 days', id, 1.5 FROM markets"
            " WHERE exchange = %s AND symbol = %s",
            [exchange, symbol],
        )
        await until_loaded(loaded_api, len(names), loads=2)  # a write from psql reloads all
        before = await assert_as_sql(loaded_api, history_api, names)
        await owner.execute("LISTEN datatracker_changes")
        async with await psycopg.AsyncConnection.connect(collector_url, autocommit=True) as conn:
            dropped = await (await conn.execute("SELECT apply_retention()")).fetchone()
        announced = [n.payload async for n in owner.notifies(timeout=1.0, stop_after=1)]
    assert (1,) == dropped
    assert before == await assert_as_sql(loaded_api, history_api, names)
    await after_a_check()
    assert before == await assert_as_sql(loaded_api, history_api, names)
    assert (len(names), 2) == await held(loaded_api)
    assert ["storage"] == announced


async def test_a_renamed_market_changes_that_pair_alone(
    loaded_api: httpx.AsyncClient, history_api: httpx.AsyncClient, history: str
) -> None:
    """A market renamed (UPDATE markets as the owner): its old name is 404, its new one
    answers as SQL; every other answer is the same bytes; no window dropped."""
    names = await pairs(history)
    before = await assert_as_sql(loaded_api, history_api, names)
    exchange, symbol = names[0]
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as owner:
        await owner.execute(
            "UPDATE markets SET symbol = 'zzzusd' WHERE exchange = %s AND symbol = %s",
            [exchange, symbol],
        )
    renamed = [(exchange, "zzzusd"), *names]
    after = await assert_as_sql(loaded_api, history_api, renamed)
    assert 404 == after[f"{exchange}/{symbol}"][0]  # type: ignore[index]
    assert {name: before[name] for name in list(before)[1:]} == {
        name: after[name] for name in list(before)[1:]
    }
    assert (len(names), 1) == await held(loaded_api)


async def test_a_deleted_market_drops_that_window_alone(
    loaded_api: httpx.AsyncClient, history_api: httpx.AsyncClient, history: str
) -> None:
    """A market deleted (as the owner; its ticks stay) is 404; the other windows stay held and
    answer the same bytes."""
    names = await pairs(history)
    before = await assert_as_sql(loaded_api, history_api, names)
    exchange, symbol = names[-1]
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as owner:
        await owner.execute(
            "DELETE FROM markets WHERE exchange = %s AND symbol = %s", [exchange, symbol]
        )
    after = await assert_as_sql(loaded_api, history_api, names)
    assert 404 == after[f"{exchange}/{symbol}"][0]  # type: ignore[index]
    assert {name: before[name] for name in list(before)[:-1]} == {
        name: after[name] for name in list(before)[:-1]
    }
    assert (len(names) - 1, 1) == await held(loaded_api)


async def test_a_write_spanning_hours_is_read_back_into_every_window(
    loaded_api: httpx.AsyncClient, history_api: httpx.AsyncClient, history: str, collector_url: str
) -> None:
    """A gap fill of three hours (every pair, a price half a minute after each stored one, in
    one write naming its span, as the collector) is in every answer at once, read back into
    the windows: none dropped, no bulk load."""
    names = await pairs(history)
    before = await assert_as_sql(loaded_api, history_api, names)
    start = HISTORY_END - timedelta(hours=3)
    fill = [
        Tick(start + timedelta(seconds=30 + 60 * minute), exchange, symbol, "X", "USD", 7.0)
        for minute in range(180)
        for exchange, symbol in names
    ]
    await write_as_collector(collector_url, fill)
    after = await assert_as_sql(loaded_api, history_api, names)
    assert all(before[name] != after[name] for name in before)
    assert (len(names), 1) == await held(loaded_api)


async def test_an_announcement_not_understood_reloads_every_window_in_bulk(
    loaded_api: httpx.AsyncClient, history_api: httpx.AsyncClient, history: str, api_url: str
) -> None:
    """A payload no trigger sends (here from the api role) drops every window; they are
    loaded again in one bulk load, and answers stay as SQL."""
    names = await pairs(history)
    await assert_as_sql(loaded_api, history_api, names)
    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as api_role:
        await api_role.execute("NOTIFY datatracker_changes, 'prices changed?'")
    await assert_as_sql(loaded_api, history_api, names)
    await until_loaded(loaded_api, len(names), loads=2)
    await assert_as_sql(loaded_api, history_api, names)
