"""Where prices come from: live exchanges through ccxt, or a simulated random walk."""

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from collector.ticks import Quote, Tick

if TYPE_CHECKING:
    from datatracker.settings import Settings


@dataclass(frozen=True, slots=True)
class HistoryBatch:
    """Some backfilled ticks, with how far the backfill has got (`done` of `total` steps)."""

    ticks: list[Tick]
    done: int
    total: int


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
