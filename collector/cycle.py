"""One collection cycle: fetch every exchange concurrently, then store the whole cycle at once."""

import asyncio
import logging
import time
from datetime import datetime, timedelta

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from collector.errors import UNREACHABLE, describe
from collector.report import CycleReport, ExchangeOutcome
from collector.sources import PriceSource
from collector.store import Store
from collector.ticks import Quote, normalise
from datatracker.instants import floor_to

log = logging.getLogger("collector")

# Attempts per exchange per cycle, all within the exchange's timeout.
MAX_ATTEMPTS = 3
BACKOFF = wait_exponential_jitter(multiplier=0.5, max=8, jitter=0.5)


def cycle_instant(now: datetime, interval_seconds: int) -> datetime:
    """The cycle under way at `now`: `now` floored to a multiple of the interval since the
    epoch. For a cycle run by hand; a scheduled one is filed by `scheduled_instant`."""
    return floor_to(now, timedelta(seconds=interval_seconds))


def scheduled_instant(scheduled: datetime, interval_seconds: int) -> datetime:
    """The instant of a cycle the scheduler fired for `scheduled`: the multiple of the interval
    nearest to it. The clock when the job runs plays no part, so a job that runs early (a
    clock step) or late (a busy event loop) is filed under the instant it was scheduled for."""
    interval = timedelta(seconds=interval_seconds)
    return floor_to(scheduled + interval / 2, interval)


def backoff(state: RetryCallState) -> float:
    """Exponential backoff with jitter, or longer when the exchange said how long (Retry-After)."""
    error = state.outcome.exception() if state.outcome else None
    asked = getattr(error, "retry_after", None) or 0.0
    return max(BACKOFF(state), asked)


async def fetch_with_retries(
    source: PriceSource, outcome: ExchangeOutcome, at: datetime, budget_seconds: float
) -> list[Quote]:
    """Fetch one exchange, retrying any failure while another attempt fits in the budget."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(MAX_ATTEMPTS) | stop_before_delay(budget_seconds),
        wait=backoff,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            outcome.attempts += 1
            return await source.fetch_quotes(outcome.exchange, at)
    raise AssertionError("unreachable: tenacity reraises the last failure")


async def fetch_exchange(
    source: PriceSource, exchange: str, at: datetime, timeout_seconds: float
) -> ExchangeOutcome:
    """Fetch and normalise one exchange's prices; a failure or timeout is recorded, not raised."""
    outcome = ExchangeOutcome(exchange)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_seconds):
            quotes = await fetch_with_retries(source, outcome, at, timeout_seconds)
    except TimeoutError:
        outcome.error = f"no answer within {timeout_seconds:g} s"
    except Exception as error:  # ccxt raises its own errors and leaks plain ones on bad bodies
        outcome.error = describe(error)
        if not isinstance(error, (*source.expected_errors, OSError)):
            outcome.unexpected = error
    else:
        normalised = normalise(exchange, at, quotes)
        outcome.ticks, outcome.dropped = normalised.ticks, normalised.dropped
    outcome.fetch_seconds = time.monotonic() - started
    return outcome


def log_outcome(outcome: ExchangeOutcome) -> None:
    """One line per exchange per cycle; an unexpected failure with its traceback."""
    tries = f" ({outcome.attempts} attempts)" if outcome.attempts > 1 else ""
    if outcome.error:
        log.warning(
            "%s: failed after %.2f s%s: %s",
            outcome.exchange,
            outcome.fetch_seconds,
            tries,
            outcome.error,
            exc_info=outcome.unexpected,
        )
        return
    dropped = f", {outcome.dropped} dropped" if outcome.dropped else ""
    log.info(
        "%s: %d ticks fetched in %.2f s%s%s",
        outcome.exchange,
        len(outcome.ticks),
        outcome.fetch_seconds,
        tries,
        dropped,
    )


async def fetch_cycle(source: PriceSource, at: datetime, *, timeout_seconds: float) -> CycleReport:
    """Fetch every exchange concurrently for instant `at`; failures are recorded, not raised."""
    outcomes = await asyncio.gather(
        *(fetch_exchange(source, name, at, timeout_seconds) for name in source.exchanges)
    )
    for outcome in outcomes:
        log_outcome(outcome)
    return CycleReport(at, list(outcomes))


def log_written(report: CycleReport, waiting: str = "") -> None:
    """One line per cycle written."""
    log.info(
        "cycle %s: %d ticks written from %d exchanges (%d failed) in %.3f s of database time%s",
        report.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        report.written,
        len(report.outcomes),
        len(report.failed),
        report.write_seconds,
        waiting,
    )


async def run_cycle(
    source: PriceSource, store: Store, at: datetime, *, timeout_seconds: float
) -> CycleReport:
    """Fetch every exchange for instant `at` and write the cycle at once, in one transaction.

    For `python -m collector once` and tests; the running collector spools its cycles
    instead (collector/backlog.py). While the database is unreachable the cycle is not
    stored (`report.stored` is False); any other database error is raised.
    """
    report = await fetch_cycle(source, at, timeout_seconds=timeout_seconds)
    try:
        await store.write(report)
    except UNREACHABLE as error:
        log.error("cycle %s not written: database unreachable (%s)", at, describe(error))
        return report
    log_written(report)
    return report
