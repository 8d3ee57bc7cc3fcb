"""Pair and exchange names as the original tracker wrote them."""

import pytest

from datatracker.symbols import normalise_exchange, normalise_symbol, normalise_symbol_query


def test_pair_is_lowercase_base_and_quote() -> None:
    """A unified pair becomes the original's name: lowercase base then quote."""
    assert "1inchusd" == normalise_symbol("1INCH", "USD")


@pytest.mark.parametrize("written", ["btcusd", "BTC-USD", "btc_usd", "BtcUsd", "btc.usd"])
def test_user_spellings_of_a_pair_are_one_pair(written: str) -> None:
    """`btcusd`, `BTC-USD` and `btc_usd` name the same pair."""
    assert "btcusd" == normalise_symbol_query(written)


@pytest.mark.parametrize("written", ["binance-us", "Binance_US", "BINANCEUS", " binanceus "])
def test_exchange_names_ignore_case_and_separators(written: str) -> None:
    """The original's `binance-us` is ccxt's `binanceus`."""
    assert "binanceus" == normalise_exchange(written)
