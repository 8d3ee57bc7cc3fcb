"""History in bulk: a grid as binary COPY rows, its parts, its width, its candles' updates."""

import struct
from array import array
from datetime import UTC, datetime, timedelta

import pytest

from collector.backfill import grid_width
from collector.bulk import POSTGRES_EPOCH, SIGNATURE, TRAILER, copy_data, part_of
from collector.maintenance import FAR_FUTURE, candle_updates
from collector.sources import GRID_STEP, Market, TickGrid

AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
MARKETS = [
    Market("kraken", "btcusd", "BTC", "USD"),
    Market("kraken", "ethusd", "ETH", "USD"),
    Market("binance", "btcusdt", "BTC", "USDT"),
]


def grid(minutes: int) -> TickGrid:
    """`minutes` minutes from AT of the three markets, price = minute * 10 + column + 0.5."""
    prices = array("d", [m * 10 + c + 0.5 for m in range(minutes) for c in range(len(MARKETS))])
    return TickGrid([AT + m * GRID_STEP for m in range(minutes)], MARKETS, prices)


def read_copy_data(data: bytes) -> list[tuple[datetime, int, float, None]]:
    """The rows of binary COPY data of ticks, as PostgreSQL reads them."""
    assert data.startswith(SIGNATURE)
    assert data.endswith(TRAILER)
    rows = []
    body = data[len(SIGNATURE) : -len(TRAILER)]
    for fields, _, micros, _, market_id, _, price, null in struct.iter_unpack(">hiqiiidi", body):
        assert (4, -1) == (fields, null)
        rows.append((POSTGRES_EPOCH + timedelta(microseconds=micros), market_id, price, None))
    return rows


def test_a_grid_is_copied_market_by_market() -> None:
    """Each market's minutes come together, in order, with its id, its prices and no
    exchange time."""
    rows = read_copy_data(copy_data(grid(4), [7, 8, 9]))

    expected = [
        (AT + m * GRID_STEP, market_id, m * 10 + c + 0.5, None)
        for c, market_id in enumerate([7, 8, 9])
        for m in range(4)
    ]
    assert expected == rows


def test_part_of_a_grid_keeps_the_chosen_minutes_whole() -> None:
    """The minutes picked keep every market's price; the others are gone."""
    part = part_of(grid(4), [1, 3])

    assert [AT + GRID_STEP, AT + 3 * GRID_STEP] == part.times
    assert [10.5, 11.5, 12.5, 30.5, 31.5, 32.5] == part.prices.tolist()


@pytest.mark.parametrize(
    ("markets", "width"),
    [
        (10_000, timedelta(hours=1)),
        (1_000, timedelta(hours=10)),
        (50_000, timedelta(minutes=10)),
        (25_000, timedelta(minutes=20)),
        (1_000_000, timedelta(minutes=1)),
    ],
)
def test_a_grid_is_whole_hours_or_a_part_of_an_hour(markets: int, width: timedelta) -> None:
    """About 600k ticks a grid, in spans that never split a candle bucket needlessly."""
    assert width == grid_width(markets)


def test_apache_roll_ups_of_a_span_cover_the_buckets_holding_it() -> None:
    """A span's roll-ups end at the end of the buckets holding its last moment; without a
    span's end they run on."""
    since, until = AT + timedelta(minutes=3), AT + timedelta(minutes=61)

    assert [
        ("roll_up_candles_5m", {"since": since, "until": AT + timedelta(minutes=65)}),
        ("roll_up_candles_1h", {"since": since, "until": AT + timedelta(hours=2)}),
    ] == candle_updates("apache", since, AT + timedelta(days=1), until)
    assert {FAR_FUTURE} == {
        params["until"] for _, params in candle_updates("apache", since, AT + timedelta(days=1))
    }


def test_timescale_refreshes_of_a_span_cover_its_whole_buckets_up_to_now() -> None:
    """A span's refreshes cover the whole buckets from the one holding its start to its end,
    or to now when that comes first."""
    since, until = AT + timedelta(minutes=3), AT + timedelta(hours=2)

    assert [
        ("refresh_candles_5m", {"start": AT, "end": until}),
        ("refresh_candles_1h", {"start": AT, "end": until}),
    ] == candle_updates("timescale", since, AT + timedelta(days=1), until)
    now = AT + timedelta(minutes=47)
    assert [
        ("refresh_candles_5m", {"start": AT, "end": AT + timedelta(minutes=45)}),
    ] == candle_updates("timescale", since, now, until)
