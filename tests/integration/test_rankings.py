"""The volatility ranking: equal to /prices' statistics, ordered, paged, filtered, validated,
and stored once per cycle (the API reads the stored one)."""

import asyncio
import math
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from collector.ticks import Tick
from collector.writer import write_ticks
from tests.api_server import serve_api
from tests.integration.comparing import mismatches
from tests.integration.history import (
    ANCHOR,
    EXCHANGES,
    PAIRS_PER_EXCHANGE,
    api_settings,
    refresh_candles,
    refresh_rankings,
)
from tests.integration.test_prices_fresh import STOPPED_SECONDS, listener_pid_of

RAW_STATS = """
    SELECT m.exchange, m.symbol, count(*), stddev_samp(t.price), min(t.price), max(t.price),
           first(t.price, t.time), last(t.price, t.time)
    FROM ticks AS t JOIN markets AS m ON m.id = t.market_id
    WHERE t.time >= %(end)s - interval '24 hours' AND t.time <= %(end)s
    GROUP BY 1, 2 ORDER BY 1, 2"""
RANKED_STATS = """
    SELECT exchange, symbol, count, stdv, min, max, first, last
    FROM volatility_ranking('cv', %(end)s) ORDER BY 1, 2"""


async def test_ranking_statistics_equal_prices(history_api: httpx.AsyncClient) -> None:
    """Every ranked pair's stdv, rank, count, min, max, first and last match /prices, from the
    candle tables (apache mode) or the continuous aggregates (timescale mode)."""
    assert [] == await mismatches(history_api)


@pytest.mark.parametrize("minutes_back", [0, 61.5, 127.25, 400.8, 1376.9])
async def test_windows_cut_mid_bucket_give_the_raw_ticks_statistics(
    history: str, minutes_back: float
) -> None:
    """volatility_ranking over a window whose edges cut 5-minute buckets equals raw SQL."""
    end = ANCHOR - timedelta(minutes=minutes_back)
    async with await psycopg.AsyncConnection.connect(history) as conn:
        raw = await (await conn.execute(RAW_STATS, {"end": end})).fetchall()
        ranked = await (await conn.execute(RANKED_STATS, {"end": end})).fetchall()

    assert [row[:3] for row in raw] == [row[:3] for row in ranked]
    assert all(
        math.isclose(a, b, rel_tol=1e-9)
        for r, k in zip(raw, ranked, strict=False)
        for a, b in zip(r[3:], k[3:], strict=False)
    )


async def test_rankings_are_by_cv_unless_stdv_is_asked_for(history_api: httpx.AsyncClient) -> None:
    """The default order is cv descending; by=stdv orders by stdv descending."""
    by_cv = (await history_api.get("/rankings")).json()["rankings"]
    by_stdv = (await history_api.get("/rankings", params={"by": "stdv"})).json()["rankings"]

    assert sorted(-r["cv"] for r in by_cv) == [-r["cv"] for r in by_cv]
    assert sorted(-r["stdv"] for r in by_stdv) == [-r["stdv"] for r in by_stdv]
    assert list(range(1, len(by_cv) + 1)) == [r["rank"] for r in by_cv]
    assert [r["cv"] for r in by_cv] == [r["stdv"] / r["mean"] for r in by_cv]


async def test_rankings_page_and_filter_by_exchange(history_api: httpx.AsyncClient) -> None:
    """limit and offset cut a page; an exchange filter keeps its pairs, ranked among all."""
    everything = (await history_api.get("/rankings")).json()
    page = (await history_api.get("/rankings", params={"limit": 3, "offset": 2})).json()
    kraken = (await history_api.get("/rankings", params={"exchange": "Kraken"})).json()

    assert len(EXCHANGES) * PAIRS_PER_EXCHANGE == everything["ranked"]
    assert everything["rankings"][2:5] == page["rankings"]
    assert [r for r in everything["rankings"] if r["exchange"] == "kraken"] == kraken["rankings"]
    assert (PAIRS_PER_EXCHANGE, "kraken") == (kraken["ranked"], kraken["exchange"])


async def test_change_pct_is_from_first_to_last(history_api: httpx.AsyncClient) -> None:
    """change_pct is (last - first) / first in percent."""
    rows = (await history_api.get("/rankings")).json()["rankings"]

    expected = [(r["last"] - r["first"]) / r["first"] * 100 for r in rows]
    assert all(map(math.isclose, expected, [r["change_pct"] for r in rows]))


@pytest.mark.parametrize(
    "params",
    [{"by": "variance"}, {"limit": 0}, {"limit": 1001}, {"offset": -1}, {"exchange": "no/such"}],
)
async def test_bad_parameters_answer_400(
    history_api: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    """An unknown `by`, a limit out of 1..1000, a negative offset or a bad exchange is a 400."""
    response = await history_api.get("/rankings", params=params)

    assert 400 == response.status_code


async def add_pair(url: str, symbol: str, minutes_ago: list[float]) -> None:
    """Write one kraken pair's ticks at the given ages."""
    now = datetime.now(UTC)
    ticks = [
        Tick(now - timedelta(minutes=m), "kraken", symbol, symbol[:-3].upper(), "USD", 1 + m / 7)
        for m in minutes_ago
    ]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await write_ticks(conn, ticks)


async def test_a_pair_with_one_tick_is_not_ranked(
    history_api: httpx.AsyncClient, history: str
) -> None:
    """/prices of a pair with a single tick in 24 hours has rank null and the ranked count."""
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as conn:
        await conn.execute(
            "WITH m AS (INSERT INTO markets (exchange, symbol, base, quote, first_seen, last_seen)"
            " VALUES ('kraken', 'newusd', 'NEW', 'USD', now(), now()) RETURNING id)"
            " INSERT INTO ticks (time, market_id, price) SELECT now() - interval '1 minute', id, 1"
            " FROM m"
        )
    await refresh_rankings(history)

    body = (await history_api.get("/prices/kraken/newusd")).json()

    assert (None, len(EXCHANGES) * PAIRS_PER_EXCHANGE) == (body["rank"], body["ranked"])


async def test_a_pair_new_since_the_last_refresh_is_ranked_by_the_next(
    history_api: httpx.AsyncClient, history: str
) -> None:
    """A pair written after the refresh has rank null in /prices until the next refresh."""
    await add_pair(history, "newusd", [3, 2, 1])
    before = (await history_api.get("/prices/kraken/newusd")).json()
    await refresh_candles(history, datetime.now(UTC) - timedelta(minutes=10))
    await refresh_rankings(history)

    after = (await history_api.get("/prices/kraken/newusd")).json()
    ranking = (await history_api.get("/rankings", params={"limit": 1000})).json()
    ranks = {row["symbol"]: row["rank"] for row in ranking["rankings"]}
    assert (None, len(EXCHANGES) * PAIRS_PER_EXCHANGE) == (before["rank"], before["ranked"])
    assert (ranks["newusd"], ranking["ranked"]) == (after["rank"], after["ranked"])
    assert len(EXCHANGES) * PAIRS_PER_EXCHANGE + 1 == ranking["ranked"]


async def test_a_refresh_replaces_the_previous_ranking_entirely(database_url: str) -> None:
    """A pair ranked over an earlier window and absent from the new one leaves the ranking."""
    await add_pair(database_url, "oldusd", [25 * 60, 24.5 * 60, 24.2 * 60])
    await add_pair(database_url, "nowusd", [30, 20, 10])
    await refresh_candles(database_url, ANCHOR - timedelta(hours=26))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT refresh_rankings(now() - interval '1 hour')")
    async with serve_api(api_settings(database_url)) as api:
        earlier = (await api.get("/rankings")).json()

    await refresh_rankings(database_url)

    async with serve_api(api_settings(database_url)) as api:
        later = (await api.get("/rankings")).json()
        prices = (await api.get("/prices/kraken/oldusd")).status_code
    assert (["oldusd"], 1) == ([r["symbol"] for r in earlier["rankings"]], earlier["ranked"])
    assert (["nowusd"], 1) == ([r["symbol"] for r in later["rankings"]], later["ranked"])
    assert later["as_of"] > earlier["as_of"]
    assert 404 == prices


async def test_a_kept_page_is_not_served_once_a_refresh_is_visible(
    loaded_api: httpx.AsyncClient, history: str, collector_url: str
) -> None:
    """With the listener's server process stopped across a ranking refresh (as a busy machine
    may leave it unscheduled), a /rankings request made once the refresh is committed waits
    for its announcement and answers the new ranking, not the page it kept."""
    kept = (await loaded_api.get("/rankings")).json()  # read from SQL, and kept
    pid = await listener_pid_of(history)
    os.kill(pid, signal.SIGSTOP)
    try:
        async with await psycopg.AsyncConnection.connect(collector_url, autocommit=True) as conn:
            await conn.execute("SELECT refresh_rankings()")
        resume = asyncio.get_running_loop().call_later(
            STOPPED_SECONDS, os.kill, pid, signal.SIGCONT
        )
        began = time.monotonic()
        answered = (await loaded_api.get("/rankings")).json()
        waited = time.monotonic() - began
    finally:
        os.kill(pid, signal.SIGCONT)
    resume.cancel()
    assert answered["as_of"] > kept["as_of"]
    assert waited >= STOPPED_SECONDS * 0.9  # answered after the process ran again
