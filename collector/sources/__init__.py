"""Where prices come from: live exchanges through ccxt, or a simulated random walk."""

from array import array
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from collector.ticks import Quote, Tick

if TYPE_CHECKING:
    from datatracker.settings import Settings


@dataclass(frozen=True, slots=True)
class HistoryBatch:
    """Some backfilled ticks, with how far the backfill has got (`done` of `total` steps)."""

    ticks: list[Tick]
    done: int
    total: int


# A grid's instants are a minute apart, as is history.
GRID_STEP = timedelta(minutes=1)


class Market(NamedTuple):
    """A pair on an exchange, named as the collector stores it."""

    exchange: str
    symbol: str
    base: str
    quote: str


@dataclass(frozen=True, slots=True)
class TickGrid:
    """Every market's tick at every instant of a span, as columns: the price of `markets[m]`
    at `times[i]` is `prices[i * len(markets) + m]`. The instants are GRID_STEP apart; such
    ticks have no exchange time."""

    times: list[datetime]
    markets: list[Market]
    prices: "array[float]"  # array("d"); not subscriptable at run time before Python 3.12

    def __len__(self) -> int:
        return len(self.prices)


@runtime_checkable
class GridSource(Protocol):
    """A source whose history is every market at every minute (the simulated walk): it
    hands it over as columns, which a backfill writes several times faster than ticks."""

    def markets(self, exchanges: Iterable[str] | None = None) -> list[Market]:
        """The markets of `exchanges` (all by default), in the order of a grid's columns."""
        ...

    def grids(
        self, start: datetime, end: datetime, exchanges: Iterable[str] | None, *, width: timedelta
    ) -> AsyncIterator[TickGrid]:
        """The minutes from `start` (exclusive) to `end` (inclusive) of `exchanges` (all when
        None), a grid per `width` of time (minutes grouped by their multiple of `width` since
        the Unix epoch)."""
        ...


class PriceSource(Protocol):
    """What the collector needs of a source of prices."""

    exchanges: tuple[str, ...]
    # Failures an exchange is expected to cause (network, HTTP, rate limits): logged in one
    # line. Any other exception from fetch_quotes is logged with its traceback.
    expected_errors: tuple[type[Exception], ...]

    async def fetch_quotes(self, exchange: str, at: datetime) -> list[Quote]:
        """Every pair's current price on one exchange (`at` is the cycle's instant)."""
        ...

    def history(
        self, start: datetime, end: datetime, exchanges: Iterable[str] | None = None
    ) -> AsyncIterator[HistoryBatch]:
        """Ticks for every pair on `exchanges` (all by default) between start and end, in
        batches."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def build_source(settings: "Settings") -> PriceSource:
    """The source PRICE_SOURCE names, over SUPPORTED_EXCHANGES."""
    if settings.price_source == "simulated":
        from collector.sources.simulated import SimulatedSource

        return SimulatedSource(
            settings.supported_exchanges,
            pairs_per_exchange=settings.simulated_pairs_per_exchange,
            seed=settings.simulated_seed,
        )
    # Imported only here: ccxt costs ~0.5 s and ~100 MB to import.
    from collector.sources.live import LiveSource

    return LiveSource(
        settings.supported_exchanges,
        timeout_seconds=settings.exchange_timeout_seconds,
        markets_reload_seconds=settings.markets_reload_seconds,
        base_url=settings.exchange_base_url,
    )
