"""What a source reports (quotes) and what the collector writes (ticks)."""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from datatracker.symbols import normalise_symbol

# Above this a "price" is a unit error or garbage, not a market (BTC is ~1e5); below MIN_PRICE
# too (the smallest quotes are around 1e-8, a satoshi). Within [MIN_PRICE, MAX_PRICE) every
# aggregate stays finite; the database refuses other prices (ticks_price_range, migration 0006).
MIN_PRICE = 1e-12
MAX_PRICE = 1e12
# Exchange timestamps outside these years are unit errors (seconds or microseconds sent as
# milliseconds) or garbage: stored as NULL rather than as a date nobody means.
EARLIEST_EXCHANGE_TIME = datetime(2009, 1, 1, tzinfo=UTC)
LATEST_EXCHANGE_TIME = datetime(2100, 1, 1, tzinfo=UTC)


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
    return price if MIN_PRICE <= price < MAX_PRICE and math.isfinite(price) else None


def exchange_time(milliseconds: object) -> datetime | None:
    """An exchange's timestamp (milliseconds since the epoch) as a time, or None when it is
    not a number or lies outside 2009-2100 (seconds or microseconds sent by mistake)."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int | float):
        return None
    seconds = milliseconds / 1000
    if not EARLIEST_EXCHANGE_TIME.timestamp() <= seconds < LATEST_EXCHANGE_TIME.timestamp():
        return None  # NaN fails the comparison too
    return datetime.fromtimestamp(seconds, UTC)


def sane_time(value: object) -> datetime | None:
    """`value` when it is a time zone aware time within 2009-2100, else None."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    return value if EARLIEST_EXCHANGE_TIME <= value < LATEST_EXCHANGE_TIME else None


def valid_name(value: object) -> str | None:
    """A currency code fit to store: a non-empty string without NUL (PostgreSQL text refuses it)."""
    return value if isinstance(value, str) and value and "\x00" not in value else None


def normalise(exchange: str, time: datetime, quotes: Iterable[Quote]) -> Normalised:
    """Ticks named the original way (`btcusd`), one per pair: bad prices and names and repeats
    dropped; an exchange time that is not a sane time becomes None."""
    ticks: dict[str, Tick] = {}
    dropped = 0
    for quote in quotes:
        price = valid_price(quote.price)
        base, quote_name = valid_name(quote.base), valid_name(quote.quote)
        symbol = normalise_symbol(base, quote_name) if base and quote_name else ""
        if price is None or not base or not quote_name or not symbol or symbol in ticks:
            dropped += 1
            continue
        sent = sane_time(quote.exchange_time)
        ticks[symbol] = Tick(time, exchange, symbol, base, quote_name, price, sent)
    return Normalised(list(ticks.values()), dropped)
