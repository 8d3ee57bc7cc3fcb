"""What a cycle produced: per exchange, the ticks fetched and what became of them."""

from dataclasses import dataclass, field
from datetime import datetime

from collector.errors import storable
from collector.ticks import Tick


@dataclass(slots=True)
class ExchangeOutcome:
    """What one exchange gave in one cycle."""

    exchange: str
    ticks: list[Tick] = field(default_factory=list)
    dropped: int = 0
    attempts: int = 0
    fetch_seconds: float = 0.0
    error: str | None = None
    written: int = 0
    # Set when the failure was not one an exchange is expected to cause: logged with its
    # traceback. Never spooled.
    unexpected: BaseException | None = None


@dataclass(slots=True)
class CycleReport:
    """A cycle's outcomes, and whether (and how fast) they reached the database."""

    at: datetime
    outcomes: list[ExchangeOutcome]
    stored: bool = False
    write_seconds: float = 0.0

    @property
    def fetched(self) -> int:
        return sum(len(outcome.ticks) for outcome in self.outcomes)

    @property
    def written(self) -> int:
        return sum(outcome.written for outcome in self.outcomes)

    @property
    def failed(self) -> list[str]:
        return [outcome.exchange for outcome in self.outcomes if outcome.error]

    def runs(self) -> dict[str, object]:
        """The parameters of the record_runs query: one collector_runs row per exchange."""
        outcomes = self.outcomes
        return {
            "time": self.at,
            "exchange": [o.exchange for o in outcomes],
            "ok": [o.error is None for o in outcomes],
            "fetched": [len(o.ticks) for o in outcomes],
            "written": [o.written for o in outcomes],
            "dropped": [o.dropped for o in outcomes],
            "fetch_seconds": [o.fetch_seconds for o in outcomes],
            "error": [None if o.error is None else storable(o.error) for o in outcomes],
        }
