"""Fills the last hours of history so a new installation has a 24-hour window at once."""

import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg_pool import AsyncConnectionPool
from tqdm import tqdm

from collector.sources import PriceSource
from collector.ticks import Tick
from collector.writer import write_ticks

log = logging.getLogger("collector.backfill")

# Ticks per write: large enough to be cheap, small enough to show progress.
BATCH_TICKS = 20_000


@dataclass(frozen=True, slots=True)
class BackfillReport:
    """How many ticks the backfill produced and how many were new."""

    start: datetime
    fetched: int
    written: int
    seconds: float


async def backfill(
    source: PriceSource,
    pool: AsyncConnectionPool,
    end: datetime,
    hours: float,
    exchanges: Iterable[str] | None = None,
) -> BackfillReport:
    """Write the source's history of `exchanges` (all by default) for the `hours` before `end`;
    stored ticks stay as they are."""
    started = time.monotonic()
    start = end - timedelta(hours=hours)
    fetched = written = 0
    pending: list[Tick] = []

    async def flush() -> None:
        nonlocal written
        async with pool.connection() as conn:
            written += sum((await write_ticks(conn, pending)).values())
        pending.clear()

    with tqdm(desc="backfill", unit="step", disable=None, file=sys.stderr) as progress:
        async for batch in source.history(start, end, exchanges):
            progress.total = batch.total
            progress.update(batch.done - progress.n)
            pending.extend(batch.ticks)
            fetched += len(batch.ticks)
            if len(pending) >= BATCH_TICKS:
                await flush()
        await flush()
    report = BackfillReport(start, fetched, written, time.monotonic() - started)
    log.info(
        "backfill of %g h to %s: %d ticks written, %d already stored, in %.1f s",
        hours,
        end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        report.written,
        report.fetched - report.written,
        report.seconds,
    )
    return report
