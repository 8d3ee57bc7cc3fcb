"""One collection cycle: fetch every exchange concurrently, write all ticks in one statement."""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from collector.sources import PriceSource
from collector.ticks import Tick, normalise
from collector.writer import QUERIES, TickWriter

log = logging.getLogger("collector")

# A job may fire a hair before its instant (clock granularity); never file it a cycle early.
EARLY_TOLERANCE = timedelta(seconds=1)


def cycle_instant(now: datetime, interval_seconds: int) -> datetime:
    """The cycle `now` belongs to: `now` floored to a multiple of the interval since the epoch."""
    seconds = (now + EARLY_TOLERANCE).timestamp()
    return datetime.fromtimestamp(seconds - seconds % interval_seconds, UTC)


@dataclass(slots=True)
class ExchangeOutcome:
    """What one exchange gave in one cycle."""

    exchange: str
    ticks: list[Tick] = field(default_factory=list)
    dropped: int = 0
    fetch_seconds: float = 0.0
    error: str | None = None
    written: int = 0


@dataclass(frozen=True, slots=True)
class CycleReport:
    """The outcome of a cycle: per exchange, and the database time of its single write."""

    at: datetime
    outcomes: list[ExchangeOutcome]
    write_seconds: float

    @property
    def written(self) -> int:
        return sum(outcome.written for outcome in self.outcomes)

    @property
    def failed(self) -> list[str]:
        return [outcome.exchange for outcome in self.outcomes if outcome.error]


def describe(error: BaseException) -> str:
    """An exception as one short line: its class and the first line of its message."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message[:200]}" if message else type(error).__name__


async def fetch_exchange(
    source: PriceSource, exchange: str, at: datetime, timeout_seconds: float
) -> ExchangeOutcome:
    """Fetch and normalise one exchange's prices; a failure or timeout is recorded, not raised."""
    outcome = ExchangeOutcome(exchange)
    started = time.monotonic()
    try:
        quotes = await asyncio.wait_for(source.fetch_quotes(exchange, at), timeout_seconds)
    except TimeoutError:
        outcome.error = f"no answer within {timeout_seconds:g} s"
    except Exception as error:  # ccxt raises its own errors and leaks plain ones on bad bodies
        outcome.error = describe(error)
    else:
        normalised = normalise(exchange, at, quotes)
        outcome.ticks, outcome.dropped = normalised.ticks, normalised.dropped
    outcome.fetch_seconds = time.monotonic() - started
    return outcome


def log_outcome(outcome: ExchangeOutcome) -> None:
    """One line per exchange per cycle."""
    if outcome.error:
        log.warning(
            "%s: failed after %.2f s: %s", outcome.exchange, outcome.fetch_seconds, outcome.error
        )
        return
    dropped = f", {outcome.dropped} dropped" if outcome.dropped else ""
    log.info(
        "%s: %d ticks written of %d fetched in %.2f s%s",
        outcome.exchange,
        outcome.written,
        len(outcome.ticks),
        outcome.fetch_seconds,
        dropped,
    )


async def record_runs(conn: AsyncConnection, report: CycleReport) -> None:
    """One collector_runs row per exchange, in one statement."""
    outcomes = report.outcomes
    await conn.execute(
        QUERIES["record_runs"],
        {
            "time": report.at,
            "exchange": [o.exchange for o in outcomes],
            "ok": [o.error is None for o in outcomes],
            "fetched": [len(o.ticks) for o in outcomes],
            "written": [o.written for o in outcomes],
            "dropped": [o.dropped for o in outcomes],
            "fetch_seconds": [o.fetch_seconds for o in outcomes],
            "error": [o.error for o in outcomes],
        },
    )


async def run_cycle(
    source: PriceSource,
    pool: AsyncConnectionPool,
    at: datetime,
    *,
    timeout_seconds: float,
    writer: TickWriter | None = None,
) -> CycleReport:
    """Fetch every exchange for instant `at` and write every tick in one statement.

    A failing exchange is logged and recorded in collector_runs; a failing write raises.
    A long-running collector passes its own `writer`, which remembers market ids.
    """
    writer = writer or TickWriter()
    outcomes = await asyncio.gather(
        *(fetch_exchange(source, name, at, timeout_seconds) for name in source.exchanges)
    )
    ticks = [tick for outcome in outcomes for tick in outcome.ticks]
    started = time.monotonic()
    async with pool.connection() as conn:
        written = await writer.write(conn, ticks)
        write_seconds = time.monotonic() - started
        for outcome in outcomes:
            outcome.written = written.get(outcome.exchange, 0)
            log_outcome(outcome)
        report = CycleReport(at, list(outcomes), write_seconds)
        await record_runs(conn, report)
    log.info(
        "cycle %s: %d ticks written from %d exchanges (%d failed) in %.3f s of database time",
        at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        report.written,
        len(outcomes),
        len(report.failed),
        write_seconds,
    )
    return report
