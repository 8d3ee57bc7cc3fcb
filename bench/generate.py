"""Generates minute ticks for many pairs, fast and repeatably (seeded), the way the collector's
backfill writes history: grids of every market at every minute, each one binary COPY, with the
candles of each brought up to date while the next is written (collector/backfill.py).

`python -m bench.generate --pairs 10000 --days 1` fills the last 24 hours up to the current
minute (14.4 million ticks), markets and 5-minute/hourly candles in about a minute and a half
on 2 cores; run again with `--days 7` to extend the same database back to 7 days (only the
missing minutes are written). `--original` also copies the generated ticks into the original
design's table.
"""

import argparse
import asyncio
import random
import time
from array import array
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from bench import databases, machine, stats
from bench.databases import QUERIES
from collector.backfill import grid_width, write_grids
from collector.maintenance import Maintenance, candle_updates
from collector.sources import GRID_STEP, Market, TickGrid
from collector.sources.simulated import quote_decimals
from collector.writer import QUERIES as COLLECTOR_QUERIES
from datatracker.settings import load_settings
from datatracker.storage import detect_storage_mode

EXCHANGES = 25
# One statement per hour when copying to the original table: 600k rows at 10k pairs.
STATEMENT_SPAN = timedelta(hours=1)


class SyntheticSource:
    """`pairs` markets spread over EXCHANGES exchanges (ex00, ex01, …), each named tok<n>usd,
    whose price wobbles by up to 1 % around a level fixed by its place (0.01 to 10,000), in
    steps of its tick size as exchanges quote (six significant digits): a source of grids for
    the collector's backfill. Each minute's prices are seeded by the seed and the minute, so a
    minute has the same prices in every run."""

    def __init__(self, pairs: int, seed: int) -> None:
        self._markets = [
            Market(
                f"ex{i % EXCHANGES:02d}", f"tok{i // EXCHANGES}usd", f"TOK{i // EXCHANGES}", "USD"
            )
            for i in range(pairs)
        ]
        self._levels = [10 ** ((i + 1) * 7919 % 600 / 100 - 2) for i in range(pairs)]
        self._decimals = [quote_decimals(level) for level in self._levels]
        self._seed = seed

    def markets(self, exchanges: Iterable[str] | None = None) -> list[Market]:
        """Every market (the exchanges are the source's own)."""
        return self._markets

    async def grids(
        self, start: datetime, end: datetime, exchanges: Iterable[str] | None, *, width: timedelta
    ) -> AsyncIterator[TickGrid]:
        """The minutes from `start` (exclusive) to `end` (inclusive), a grid per `width`."""
        times: list[datetime] = []
        prices: array[float] = array("d")
        window = None
        for step in range(1, int((end - start) / GRID_STEP) + 1):
            at = start + step * GRID_STEP
            if times and at.timestamp() // width.total_seconds() != window:
                yield TickGrid(times, self._markets, prices)
                times, prices = [], array("d")
            window = at.timestamp() // width.total_seconds()
            times.append(at)
            wobble = random.Random(f"{self._seed}:{at.timestamp():.0f}").random
            prices.extend(
                [
                    round(level * (1 + 0.02 * (wobble() - 0.5)), decimals)
                    for level, decimals in zip(self._levels, self._decimals, strict=True)
                ]
            )
            await asyncio.sleep(0)  # a minute at a time, so that the write under way goes on
        if times:
            yield TickGrid(times, self._markets, prices)


def current_minute() -> datetime:
    """The start of the current minute, UTC."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def spans(start: datetime, stop: datetime) -> Iterator[tuple[datetime, datetime]]:
    """[start, stop) cut into STATEMENT_SPAN pieces."""
    while start < stop:
        end = min(start + STATEMENT_SPAN, stop)
        yield start, end
        start = end


def missing_ranges(
    conn: psycopg.Connection, start: datetime, stop: datetime
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, stop) before the oldest and after the newest stored tick."""
    oldest, newest, _ = conn.execute(QUERIES["stored_range"]).fetchone() or (None, None, 0)
    if oldest is None:
        return [(start, stop)]
    ranges = [(start, min(oldest, stop))] if start < oldest else []
    after = max(newest + timedelta(minutes=1), start)
    return ranges + ([(after, stop)] if after < stop else [])


async def generate_ticks(
    url: str, source: SyntheticSource, ranges: list[tuple[datetime, datetime]], candles: bool
) -> None:
    """Write every market's ticks in each of the ranges [start, stop), with the candles of
    each grid when `candles`, as the collector's backfill does."""
    pool = AsyncConnectionPool(url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True})
    await pool.open(wait=True)
    try:
        upkeep = None
        if candles:
            async with pool.connection() as conn:
                mode = await detect_storage_mode(conn)
            upkeep = Maintenance(load_settings(_env_file=None, database_url=url), pool, mode)
        width = grid_width(len(source.markets()))
        for begin, end in ranges:
            # From the minute before `begin` (exclusive) to the last minute before `end`.
            grids = source.grids(begin - GRID_STEP, end - GRID_STEP, None, width=width)
            await write_grids(grids, pool, int((end - begin) / GRID_STEP), upkeep)
        if upkeep is not None and upkeep.mode == "timescale" and ranges:
            # The collector leaves these to the refresh policies (it may not own the
            # aggregates); this benchmark connects as their owner and materialises at once.
            since, now = min(begin for begin, _ in ranges), datetime.now(UTC)
            async with pool.connection() as conn:
                for query, params in candle_updates("timescale", since, now):
                    await conn.execute(COLLECTOR_QUERIES[query], params)
    finally:
        await pool.close()


def generate(
    url: str,
    *,
    pairs: int,
    days: float,
    seed: int = 42,
    original: bool = False,
    candles: bool = True,
) -> dict[str, object]:
    """Fill `url` with `days` of minute ticks for `pairs` markets up to now; return the timings.

    `candles=False` leaves the candle tables alone (for footprint runs, which need only ticks).
    """
    stop = current_minute() + timedelta(minutes=1)
    start = stop - timedelta(days=days)
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        ranges = missing_ranges(conn, start, stop)
    asyncio.run(generate_ticks(url, SyntheticSource(pairs, seed), ranges, candles))
    ticks_seconds = time.monotonic() - started
    with psycopg.connect(url, autocommit=True) as conn:
        if original:
            for begin, end in ranges:
                for first, after in spans(begin, end):
                    params = {"start": first, "stop": after}
                    conn.execute(QUERIES["copy_to_original_prices"], params)
        rows, size = conn.execute(QUERIES["ticks_footprint"]).fetchone() or (0, 0)
    return {
        "pairs": pairs,
        "days": days,
        "ranges": [(str(begin), str(end)) for begin, end in ranges],
        "ticks": rows,
        "hypertable_bytes": size,
        "ticks_seconds": round(ticks_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_tracker"))
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--original", action="store_true", help="also fill original_prices")
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the database")
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Generate the data the options describe, print and return what was done."""
    args = parse(argv)
    url = databases.prepare(args.database_url, fresh=args.fresh)
    result = {"machine": machine.describe(url)} | generate(
        url, pairs=args.pairs, days=args.days, seed=args.seed, original=args.original
    )
    print(result)
    stats.save(result, args.output)
    return result


if __name__ == "__main__":
    main()
