"""GET /prices/{exchange}/{symbol}/candles: combined exactly from the stored candles, validated."""

from datetime import timedelta

import httpx
import psycopg
import pytest

from tests.integration.comparing import differences
from tests.integration.history import ANCHOR

CANDLES_FROM_TICKS = """
    SELECT time_bucket(%(width)s::interval, t.time), first(t.price, t.time), max(t.price),
           min(t.price), last(t.price, t.time), count(*), avg(t.price), stddev_samp(t.price)
    FROM ticks AS t JOIN markets AS m ON m.id = t.market_id
    WHERE m.exchange = 'kraken' AND m.symbol = 'btcusd'
      AND time_bucket(%(width)s::interval, t.time) >= %(start)s
      AND time_bucket(%(width)s::interval, t.time) < %(end)s
    GROUP BY 1 ORDER BY 1"""


def iso(moment: object) -> str:
    """A UTC time as the API writes it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("interval", "width"), [("15m", "15 minutes"), ("4h", "4 hours")])
async def test_candles_equal_aggregates_of_the_raw_ticks(
    history_api: httpx.AsyncClient, history: str, interval: str, width: str
) -> None:
    """Each candle's OHLC, count, mean and stdv equal the same aggregates over its raw ticks."""
    start, end = ANCHOR - timedelta(hours=20), ANCHOR
    params = {"interval": interval, "start": iso(start), "end": iso(end)}
    async with await psycopg.AsyncConnection.connect(history) as conn:
        cursor = await conn.execute(
            CANDLES_FROM_TICKS, {"width": width, "start": start, "end": end}
        )
        expected = await cursor.fetchall()

    body = (await history_api.get("/prices/kraken/btcusd/candles", params=params)).json()

    fields = ("open", "high", "low", "close", "count", "mean", "stdv")
    actual = [[c["time"], *(c[f] for f in fields)] for c in body["candles"]]
    # stdv is None in both for a bucket of one tick: the newest bucket holds one when the
    # run starts a minute after a bucket boundary.
    assert [] == differences([[iso(row[0]), *row[1:]] for row in expected], actual)


@pytest.mark.parametrize("params", [{"interval": "2m"}, {"start": "yesterday"}])
async def test_bad_candle_parameters_answer_400(
    history_api: httpx.AsyncClient, params: dict[str, str]
) -> None:
    """An unknown interval or an unreadable time is a 400."""
    response = await history_api.get("/prices/kraken/btcusd/candles", params=params)

    assert 400 == response.status_code


async def test_a_range_ending_before_it_starts_is_a_400(
    history_api: httpx.AsyncClient,
) -> None:
    """start after end is a malformed request, said so, not an empty list."""
    params = {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
    response = await history_api.get("/prices/kraken/btcusd/candles", params=params)

    assert (400, "start (2026-01-02T00:00:00+00:00) is after end (2026-01-01T00:00:00+00:00)") == (
        response.status_code,
        response.json()["detail"],
    )


async def test_an_empty_range_has_no_candles(history_api: httpx.AsyncClient) -> None:
    """start equal to end is the empty range [start, end): no candles."""
    params = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
    response = await history_api.get("/prices/kraken/btcusd/candles", params=params)

    assert (200, []) == (response.status_code, response.json()["candles"])


async def test_a_long_range_is_cut_to_the_newest_5000_candles(
    history_api: httpx.AsyncClient,
) -> None:
    """Five years of 5-minute candles start 5000 candles before the end."""
    params = {"interval": "5m", "start": "2021-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
    response = await history_api.get("/prices/kraken/btcusd/candles", params=params)

    assert "2025-12-14T15:20:00Z" == response.json()["start"]


async def test_candles_of_an_unknown_pair_answer_404(history_api: httpx.AsyncClient) -> None:
    """Candles of a pair nobody lists are a 404."""
    response = await history_api.get("/prices/kraken/nosuchusd/candles")

    assert 404 == response.status_code


async def test_a_range_ending_in_year_one_has_no_candles(history_api: httpx.AsyncClient) -> None:
    """An end so early that the default start would precede year 1 answers an empty list."""
    params = {"end": "0001-01-01T02:00:00Z"}
    response = await history_api.get("/prices/kraken/btcusd/candles", params=params)

    assert (200, []) == (response.status_code, response.json()["candles"])
