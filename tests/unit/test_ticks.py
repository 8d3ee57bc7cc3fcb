"""Turning an exchange's quotes into ticks: what is kept and what is dropped."""

import math
from datetime import UTC, datetime

import pytest

from collector.ticks import Quote, Tick, exchange_time, normalise, valid_price

AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (97000.5, 97000.5),
        ("0.00002", 0.00002),
        (0, None),
        (-1.0, None),
        (math.nan, None),
        (math.inf, None),
        ("abc", None),
        (None, None),
        (True, None),
        (1e15, None),
        (1e12, None),
        (5e-324, None),
        (1e-13, None),
        (1e-12, 1e-12),
        (999_999_999_999.9, 999_999_999_999.9),
    ],
)
def test_only_finite_positive_plausible_prices_are_valid(
    value: object, expected: float | None
) -> None:
    """Zero, negative, NaN, infinite, non-numeric and absurd prices (outside [1e-12, 1e12)) are
    rejected."""
    assert expected == valid_price(value)


def test_normalise_names_pairs_and_keeps_base_quote_and_exchange_time() -> None:
    """A quote becomes a tick at the cycle's instant, named the original way."""
    sent = datetime(2026, 1, 31, 11, 59, 58, tzinfo=UTC)
    result = normalise("kraken", AT, [Quote("BTC", "USD", "97000.5", sent)])
    assert [Tick(AT, "kraken", "btcusd", "BTC", "USD", 97000.5, sent)] == result.ticks
    assert 0 == result.dropped


def test_normalise_drops_bad_prices_and_repeated_pairs() -> None:
    """A pair reported twice keeps its first price; bad prices are counted as dropped."""
    quotes = [
        Quote("BTC", "USD", 97000.0),
        Quote("BTC", "USD", 1.0),
        Quote("ETH", "USD", "NaN"),
        Quote("SOL", "USD", 180.0),
    ]
    result = normalise("kraken", AT, quotes)
    assert [("btcusd", 97000.0), ("solusd", 180.0)] == [(t.symbol, t.price) for t in result.ticks]
    assert 2 == result.dropped


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_769_860_800_000, datetime(2026, 1, 31, 12, 0, tzinfo=UTC)),
        (1_769_860_800_000.5, datetime(2026, 1, 31, 12, 0, 0, 500, tzinfo=UTC)),
        (1_769_860_800_000_000, None),  # microseconds: "year 57971"
        (1_769_860_800, None),  # seconds
        (-1, None),
        (math.nan, None),
        (math.inf, None),
        ("1769860800000", None),
        (None, None),
        (True, None),
    ],
)
def test_only_sane_millisecond_timestamps_become_exchange_times(
    value: object, expected: datetime | None
) -> None:
    """Microseconds, seconds, negative, NaN, strings and booleans give no exchange time."""
    assert expected == exchange_time(value)


def test_normalise_keeps_a_quote_whose_exchange_time_is_no_sane_time() -> None:
    """A naive or absurd exchange time is dropped, not the quote."""
    quotes = [
        Quote("BTC", "USD", 97000.0, datetime(2026, 1, 31, 12, 0)),
        Quote("ETH", "USD", 3400.0, datetime(1970, 1, 21, tzinfo=UTC)),
    ]
    result = normalise("kraken", AT, quotes)
    assert [None, None] == [tick.exchange_time for tick in result.ticks]
    assert 0 == result.dropped


@pytest.mark.parametrize(("base", "quote"), [("BT\x00C", "USD"), ("BTC", None), ("", "USD")])
def test_normalise_drops_quotes_with_unstorable_names(base: object, quote: object) -> None:
    """A base or quote that is missing, empty or holds a NUL is dropped and counted."""
    result = normalise("kraken", AT, [Quote(base, quote, 97000.0)])  # type: ignore[arg-type]
    assert ([], 1) == (result.ticks, result.dropped)
