"""Fills the last hours of history so a new installation has a 24-hour window at once."""

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Never, TextIO

from psycopg_pool import AsyncConnectionPool
from tqdm import tqdm

from collector.bulk import GridWriter
from collector.maintenance import Maintenance
from collector.sources import GRID_STEP, GridSource, PriceSource, TickGrid
from collector.ticks import Tick
from collector.writer import QUERIES, write_ticks
from datatracker.instants import floor_to

log = logging.getLogger("collector.backfill")

# Ticks per write of a source's history batches: large enough to be cheap, small enough to
# show progress.
BATCH_TICKS = 20_000
# Ticks per grid, about: 23 MB of COPY data, a second or two of writing.
GRID_TICKS = 600_000
# Grid widths under an hour: each divides an hour, so that no candle bucket is split between
# two grids.
MINUTES_IN_HOUR_PARTS = (1, 5, 10, 15, 20, 30)


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
    *,
    candles: Maintenance | None = None,
    grid_ticks: int = GRID_TICKS,
) -> BackfillReport:
    """Write the source's history of `exchanges` (all by default) for the `hours` before `end`;
    stored ticks stay as they are. With `candles`, the candles of that history are brought up
    to date too, as it is written (on a second connection of the pool). A source of grids is
    written about `grid_ticks` ticks at a time."""
    started = time.monotonic()
    start = min(await within_horizon(pool, end - timedelta(hours=hours)), end)
    if isinstance(source, GridSource):
        width = grid_width(len(source.markets(exchanges)), grid_ticks)
        grids = source.grids(start, end, exchanges, width=width)
        fetched, written = await write_grids(grids, pool, int((end - start) / GRID_STEP), candles)
    else:
        fetched, written = await write_batches(source, pool, start, end, exchanges)
        if candles is not None:
            await candles.refresh_history(start)
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


async def within_horizon(pool: AsyncConnectionPool, start: datetime) -> datetime:
    """`start`, or the oldest whole minute the database still takes ticks at when `start` is
    older (the raw retention): a history the database would refuse is not fetched at all."""
    async with pool.connection() as conn:
        cursor = await conn.execute(QUERIES["write_horizon"])
        row = await cursor.fetchone()
    if row is None or start >= row[0]:
        return start
    horizon = ceil_to_step(row[0].astimezone(UTC))
    log.warning(
        "backfill starts at %s, not %s: the database keeps raw ticks for RAW_RETENTION only",
        horizon.strftime("%Y-%m-%dT%H:%M:%SZ"),
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return horizon


def ceil_to_step(moment: datetime) -> datetime:
    """The first instant of the grid (a whole minute) at or after `moment`."""
    floor = floor_to(moment, GRID_STEP)
    return floor if floor == moment else floor + GRID_STEP


async def write_batches(
    source: PriceSource,
    pool: AsyncConnectionPool,
    start: datetime,
    end: datetime,
    exchanges: Iterable[str] | None,
) -> tuple[int, int]:
    """Write the source's history batches, BATCH_TICKS at a time: (fetched, written)."""
    fetched = written = 0
    pending: list[Tick] = []

    async def flush() -> None:
        nonlocal written
        async with pool.connection() as conn:
            written += sum((await write_ticks(conn, pending)).values())
        pending.clear()

    with progress_bar("step") as progress:
        async for batch in source.history(start, end, exchanges):
            progress.total = batch.total
            progress.update(batch.done - progress.n)
            pending.extend(batch.ticks)
            fetched += len(batch.ticks)
            if len(pending) >= BATCH_TICKS:
                await flush()
        await flush()
    return fetched, written


async def write_grids(
    grids: AsyncIterator[TickGrid],
    pool: AsyncConnectionPool,
    minutes: int,
    candles: Maintenance | None,
) -> tuple[int, int]:
    """Write the grids (`minutes` in all) one by one: (fetched, written).

    Three things overlap: the source computes the next grid while one connection writes the
    last, and another brings the candles of the one before up to date.
    """
    writer = GridWriter()
    fetched = written = 0
    with progress_bar("minute", minutes) as progress:
        async with (
            ahead(grids) as computed,
            behind(candles) as follow,
            pool.connection() as conn,
        ):
            async for grid in computed:
                began = time.perf_counter()
                written += await writer.write(conn, grid)
                log.debug("%d ticks written in %.2f s", len(grid), time.perf_counter() - began)
                fetched += len(grid)
                progress.update(len(grid.times))
                await follow(grid)
    return fetched, written


@contextlib.asynccontextmanager
async def behind(
    candles: Maintenance | None,
) -> AsyncIterator[Callable[[TickGrid], Awaitable[None]]]:
    """`follow(grid)` once a grid is written: its candles are brought up to date in the
    background, one grid at a time, in order. On the way out the last update is waited for
    (or cancelled, on an error)."""
    updating: asyncio.Task[None] | None = None

    async def follow(grid: TickGrid) -> None:
        nonlocal updating
        if candles is not None:
            if updating is not None:
                await updating
            updating = asyncio.create_task(refresh_candles(candles, grid))

    try:
        yield follow
        if updating is not None:
            await updating
    finally:
        if updating is not None and not updating.done():
            updating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await updating


async def refresh_candles(candles: Maintenance, grid: TickGrid) -> None:
    """Bring the candles of the grid's span up to date."""
    began = time.perf_counter()
    await candles.refresh_span(grid.times[0], grid.times[-1] + GRID_STEP)
    log.debug("candles from %s up to date in %.2f s", grid.times[0], time.perf_counter() - began)


def grid_width(markets: int, ticks: int = GRID_TICKS) -> timedelta:
    """The span of a grid of about `ticks` ticks: whole hours, or a part of an hour."""
    minutes = ticks // max(markets, 1)
    if minutes >= 60:
        return timedelta(hours=minutes // 60)
    return timedelta(minutes=max(part for part in MINUTES_IN_HOUR_PARTS if part <= max(minutes, 1)))


@contextlib.asynccontextmanager
async def ahead(grids: AsyncIterator[TickGrid]) -> AsyncIterator[AsyncIterator[TickGrid]]:
    """The grids, each computed while the one before it is being written."""
    queue: asyncio.Queue[TickGrid | Exception | None] = asyncio.Queue(maxsize=1)

    async def compute() -> None:
        try:
            async for grid in grids:
                await queue.put(grid)
        except Exception as error:  # raised where the grids are taken
            await queue.put(error)
        else:
            await queue.put(None)

    async def handed_over() -> AsyncIterator[TickGrid]:
        while (grid := await queue.get()) is not None:
            if isinstance(grid, Exception):
                raise grid
            yield grid

    computing = asyncio.create_task(compute())
    try:
        yield handed_over()
    finally:
        computing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await computing


def progress_bar(unit: str, total: int | None = None, file: TextIO | None = None) -> "tqdm[Never]":
    """A progress bar on stderr (or `file`), shown only on a terminal and cleared when done:
    the log line that follows says what was written. Left in place, its last state would be
    drawn twice (by the last update, then again on closing), which a terminal's log shows."""
    return tqdm(
        desc="backfill", unit=unit, total=total, disable=None, leave=False, file=file or sys.stderr
    )
