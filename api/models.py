"""The API's response bodies."""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Price:
    """One tick: a pair's price at a collection instant."""

    exchange: str
    symbol: str
    price: float
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PriceHistory:
    """A pair's last 24 hours, oldest first, and the sample standard deviation of those prices."""

    exchange: str
    symbol: str
    prices: list[Price]
    stdv: float | None


@dataclass(frozen=True, slots=True)
class Health:
    """Whether the database answers, and how old the newest tick is."""

    status: str
    database: str
    newest_tick: datetime | None = None
    newest_tick_age_seconds: float | None = None
