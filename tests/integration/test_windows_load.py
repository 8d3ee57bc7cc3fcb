"""The bulk load of the windows, as the role `api`: every window it keeps is the one SQL gives;
a window asked for while it runs is read before the pages nobody asked for, from the moment it
is asked, and one asked for while another is read does not wait for that read; and a change
announced while a page is read or kept is not missed: what the page read before it is not
kept, and is read again."""

import asyncio
import contextlib
import gc
import time

import psycopg
import pytest

import api.windows as windows_module
from api.announcements import TICKS, Announcement
from api.windows import DAY_US, LOAD_APPLICATION, QUERIES, PriceWindows, Window
from datatracker.instants import instant
from tests.integration.history import ANCHOR


async def started(api_url: str) -> PriceWindows:
    """Windows ready to load, as the listener leaves them once connected."""
    windows = PriceWindows(2**30)
    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as conn:
        await windows.start(conn)
    return windows


async def windows_in_sql(api_url: str) -> dict[int, tuple[list[int], list[float]]]:
    """Every market's ticks of the last 24 hours as SQL reads them now, by market id."""
    since = instant(time.time_ns() // 1000 - DAY_US)
    found = {}
    async with await psycopg.AsyncConnection.connect(api_url) as conn:
        cursor = await conn.execute("SELECT exchange, symbol FROM markets")
        for exchange, symbol in await cursor.fetchall():
            params = {"exchange": exchange, "symbol": symbol, "since": since}
            cursor = await conn.execute(QUERIES["price_window"], params, binary=True)
            market_id, _, _, times, prices = await cursor.fetchone() or ()
            found[market_id] = (list(times), list(prices))
    return found


def columns(window: Window | None) -> tuple[list[int], list[float]] | None:
    return None if window is None else (list(window.times), list(window.prices))


async def test_every_window_the_load_keeps_is_the_one_sql_gives(
    history: str, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(windows_module, "LOAD_PAGE_MARKETS", 3)  # pages of 3, 3 and 2
    monkeypatch.setattr(windows_module, "ADMIT_BATCH", 2)
    windows = await started(api_url)
    await windows.load(api_url)
    expected = await windows_in_sql(api_url)
    assert len(expected) == len(windows) == 8
    assert {market: columns(windows.window(market)) for market in expected} == expected


async def test_a_window_asked_for_is_read_before_the_pages_nobody_asked_for(
    history: str, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One connection reads the pages, one market each, slowly: the last market's window,
    asked for at once, is held long before its page would be read."""
    monkeypatch.setattr(windows_module, "LOAD_PAGE_MARKETS", 1)
    expected = await windows_in_sql(api_url)
    last = max(expected)
    windows = await started(api_url)

    async def slowly() -> None:
        await asyncio.sleep(0.2)

    load = asyncio.create_task(windows.load(api_url, slowly))
    await asyncio.sleep(0)
    window = await windows.held_soon(last)
    held_then = len(windows)
    await load
    assert columns(window) == expected[last]
    assert held_then <= 3  # 8 pages take 1.6 s; the window asked for came in ~0.2 s
    assert len(windows) == 8


class HeldBack:
    """A load's `caught_up` that holds every read back until `go` is set, counting them."""

    def __init__(self) -> None:
        self.reads, self.go, self._arrived = 0, asyncio.Event(), asyncio.Event()

    async def __call__(self) -> None:
        self.reads += 1
        self._arrived.set()
        await self.go.wait()

    async def until(self, reads: int) -> None:
        async with asyncio.timeout(10):
            while self.reads < reads:
                self._arrived.clear()
                await self._arrived.wait()


async def test_a_window_asked_for_while_another_is_read_is_read_meanwhile(
    history: str, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page, a window asked for, and a second one asked for meanwhile are all read at
    once, the second not behind the first."""
    monkeypatch.setattr(windows_module, "LOAD_PAGE_MARKETS", 8)
    monkeypatch.setattr(windows_module, "LOAD_WAIT_SECONDS", 30.0)
    expected = await windows_in_sql(api_url)
    first, second = sorted(expected)[-2:]
    windows, held_back = await started(api_url), HeldBack()
    load = asyncio.create_task(windows.load(api_url, held_back))
    try:
        asked = [asyncio.create_task(windows.held_soon(first))]
        await held_back.until(2)  # the page's read and the first window's
        asked.append(asyncio.create_task(windows.held_soon(second)))
        await held_back.until(3)
    finally:
        held_back.go.set()
        await load
    held = await asyncio.gather(*asked)
    assert [columns(window) for window in held] == [expected[first], expected[second]]


async def test_a_window_asked_for_as_a_request_comes_is_read_before_it_waits(
    history: str, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request asks for its window as it comes (`ask`), and waits for it only after its
    sync round: the read begins at the ask, with nobody waiting yet."""
    monkeypatch.setattr(windows_module, "LOAD_PAGE_MARKETS", 8)
    monkeypatch.setattr(windows_module, "LOAD_WAIT_SECONDS", 30.0)
    expected = await windows_in_sql(api_url)
    last = max(expected)
    async with await psycopg.AsyncConnection.connect(api_url) as conn:
        cursor = await conn.execute("SELECT exchange, symbol FROM markets WHERE id = %s", [last])
        exchange, symbol = await cursor.fetchone() or ("", "")
    windows, held_back = await started(api_url), HeldBack()
    load = asyncio.create_task(windows.load(api_url, held_back))
    try:
        await held_back.until(1)  # the page's read
        windows.ask(exchange, symbol)
        await held_back.until(2)
    finally:
        held_back.go.set()
        await load
    assert columns(windows.window(last)) == expected[last]


async def test_a_page_read_before_a_change_was_announced_is_read_again(
    history: str, api_url: str, collector_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the first page of four is kept, the collector writes a new minute for every pair
    and the change is announced (as the listener does on receipt): the windows kept before
    it are the listener's to bring up to date; every other window the load keeps has the new
    minute, and the load keeps all eight."""
    monkeypatch.setattr(windows_module, "LOAD_PAGE_MARKETS", 4)
    monkeypatch.setattr(windows_module, "ADMIT_BATCH", 1)
    markets, anchor_us = list(await windows_in_sql(api_url)), int(ANCHOR.timestamp() * 1e6)
    windows = await started(api_url)
    admit, kept_before = windows.admit, set[int]()

    def admit_with_a_change(window: Window, version: int) -> bool:
        if not kept_before and len(windows) == 2:
            kept_before.update(market for market in markets if windows.window(market))
            with psycopg.connect(collector_url, autocommit=True) as writer:
                writer.execute(
                    "INSERT INTO ticks (time, market_id, price) SELECT %s, id, 1.5 FROM markets",
                    [ANCHOR],
                )
            windows.announce(TICKS)
        return admit(window, version)

    monkeypatch.setattr(windows, "admit", admit_with_a_change)
    await windows.load(api_url)
    expected = await windows_in_sql(api_url)
    assert len(kept_before) == 2
    assert len(windows) == 8
    assert all(expected[market][0][-1] == anchor_us for market in expected)
    for market in expected.keys() - kept_before:
        assert columns(windows.window(market)) == expected[market]
    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as conn:
        change = Announcement(TICKS, (anchor_us, anchor_us))
        await windows.apply(conn, change, time.time_ns() // 1000)
    assert {market: columns(windows.window(market)) for market in expected} == expected


async def test_a_load_stopped_as_it_begins_leaves_no_connection_open(
    history: str, api_url: str
) -> None:
    """Stopped while its connections are being opened (the listener lost, a load begun
    again): each is closed once opened, none is left to the garbage collector."""
    windows = await started(api_url)
    load = asyncio.create_task(windows.load(api_url))
    for _ in range(3):
        await asyncio.sleep(0)
    load.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await load
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as owner:
        deadline = time.monotonic() + 10
        while True:
            gc.collect()  # a connection dropped unclosed warns here, failing the test
            cursor = await owner.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                [LOAD_APPLICATION],
            )
            if (await cursor.fetchone() or (1,))[0] == 0:
                break
            assert time.monotonic() < deadline, "a load's connection is still open"
            await asyncio.sleep(0.05)
