"""What a source reports (quotes) and what the collector writes (ticks)."""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from datatracker.symbols import normalise_symbol

# Above this a "price" is a unit error or garbage, not a market (BTC is ~1e5).
MAX_PRICE = 1e12


@dataclass(frozen=True, slots=True)
class Quote:
    """One pair's last price as an exchange reported it."""

    base: str
    quote: str
    price: object
    exchange_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """One pair's price at one cycle's instant, ready to write."""

    time: datetime
    exchange: str
    symbol: str
    base: str
    quote: str
    price: float
    exchange_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Normalised:
    """The ticks of one exchange's quotes, and how many quotes were dropped as unusable."""

    ticks: list[Tick]
    dropped: int


def valid_price(value: object) -> float | None:
    """The price as a float when it is a finite, positive, plausible number."""
    if isinstance(value, bool):
        return None
    try:
        price = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return price if 0 < price < MAX_PRICE and math.isfinite(price) else None


def normalise(exchange: str, time: datetime, quotes: Iterable[Quote]) -> Normalised:
    """Ticks named the original way (`btcusd`), one per pair: bad prices and repeats dropped."""
    ticks: dict[str, Tick] = {}
    dropped = 0
    for quote in quotes:
        price = valid_price(quote.price)
        symbol = normalise_symbol(quote.base, quote.quote)
        if price is None or not symbol or symbol in ticks:
            dropped += 1
            continue
        ticks[symbol] = Tick(
            time, exchange, symbol, quote.base, quote.quote, price, quote.exchange_time
        )
    return Normalised(list(ticks.values()), dropped)
