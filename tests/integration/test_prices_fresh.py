"""Never stale: a /prices request made after a commit is visible to other connections is
answered with that commit in it, however late PostgreSQL delivers the announcement."""

import asyncio
import os
import signal
import time
from datetime import datetime, timedelta

import httpx
import psycopg

from collector.ticks import Tick
from collector.writer import TickWriter
from tests.integration.history import HISTORY_END
from tests.integration.test_prices_hot import pairs
from tests.integration.test_response_cache_changes import listener_pid

CYCLES = 150
# How long the listener's server process is held stopped across a commit.
STOPPED_SECONDS = 0.3


async def commit_cycle(
    collector: psycopg.AsyncConnection, names: list[tuple[str, str]], at: datetime, price: float
) -> None:
    """A cycle of every pair as the collector's writer commits it (naming its span)."""
    writer = TickWriter()
    ticks = [Tick(at, exchange, symbol, "X", "USD", price) for exchange, symbol in names]
    async with writer.transaction(collector):
        await writer.write(collector, ticks)


async def until_visible(observer: psycopg.AsyncConnection, at: datetime) -> None:
    """Return as soon as another connection sees the tick stamped `at`."""
    while True:
        cursor = await observer.execute("SELECT max(time) FROM ticks")
        row = await cursor.fetchone()
        if row is not None and row[0] >= at:
            return


async def newest(api: httpx.AsyncClient, exchange: str, symbol: str) -> datetime:
    response = await api.get(f"/prices/{exchange}/{symbol}")
    assert 200 == response.status_code, response.text
    return datetime.fromisoformat(response.json()["prices"][-1]["updated_at"])


async def test_every_answer_after_a_visible_commit_includes_it(
    loaded_api: httpx.AsyncClient, history: str, collector_url: str
) -> None:
    """150 cycles back to back: after each commit, as soon as another connection sees it, a
    request for one pair (each in turn) shows that cycle's instant."""
    names = await pairs(history)
    stale = []
    async with (
        await psycopg.AsyncConnection.connect(collector_url) as collector,
        await psycopg.AsyncConnection.connect(history, autocommit=True) as observer,
    ):
        for cycle in range(1, CYCLES + 1):
            at = HISTORY_END + cycle * timedelta(milliseconds=100)
            await commit_cycle(collector, names, at, 1000.0 + cycle)
            await until_visible(observer, at)
            exchange, symbol = names[cycle % len(names)]
            served = await newest(loaded_api, exchange, symbol)
            if served != at:
                stale.append(f"cycle {cycle}: {served} instead of {at}")
    assert [] == stale


async def test_an_announcement_delivered_late_is_waited_for(
    loaded_api: httpx.AsyncClient, history: str, collector_url: str
) -> None:
    """With the listener's server process stopped across a commit (as a busy machine may leave
    it unscheduled), a request made once the commit is visible waits for the announcement
    and shows the commit, rather than answering from the window it held."""
    names = await pairs(history)
    exchange, symbol = names[0]
    pid = await listener_pid_of(history)
    for cycle in range(1, 4):
        at = HISTORY_END + cycle * timedelta(seconds=1)
        os.kill(pid, signal.SIGSTOP)
        try:
            async with await psycopg.AsyncConnection.connect(collector_url) as collector:
                await commit_cycle(collector, names, at, 2000.0 + cycle)
            resume = asyncio.get_running_loop().call_later(
                STOPPED_SECONDS, os.kill, pid, signal.SIGCONT
            )
            began = time.monotonic()
            served = await newest(loaded_api, exchange, symbol)
            waited = time.monotonic() - began
        finally:
            os.kill(pid, signal.SIGCONT)
        resume.cancel()
        assert at == served
        assert waited >= STOPPED_SECONDS * 0.9  # answered after the process ran again
        assert (len(names), 1) == await held_and_loads(loaded_api)


async def held_and_loads(api: httpx.AsyncClient) -> tuple[int, int]:
    health = (await api.get("/health")).json()
    return health["price_windows"], health["price_window_loads"]


async def listener_pid_of(database_url: str) -> int:
    """The server process of the API's listening connection (skip when not on this machine)."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        return await listener_pid(conn)
