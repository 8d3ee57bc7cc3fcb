"""Normalised names of exchanges and currency pairs, shared by collector and API."""

import re

_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def normalise_exchange(name: str) -> str:
    """`Binance-US` and `binance_us` both name ccxt's exchange `binanceus`."""
    return _NOT_ALNUM.sub("", name.strip().lower())


def normalise_symbol(base: str, quote: str) -> str:
    """The original tracker's pair name: lowercase base and quote, joined (`1inchusd`)."""
    return _NOT_ALNUM.sub("", f"{base}{quote}".lower())


def normalise_symbol_query(text: str) -> str:
    """A pair as a user writes it (`BTC-USD`, `btc_usd`, `BTC/USD`) in normalised form."""
    return _NOT_ALNUM.sub("", text.lower())
