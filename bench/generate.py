"""Generates minute ticks for many pairs with set-based SQL, fast and repeatably (seeded).

`python -m bench.generate --pairs 10000 --days 1` fills the last 24 hours up to the current
minute (14.4 million ticks), markets and 5-minute/hourly candles; run again with `--days 7`
to extend the same database back to 7 days (only the missing minutes are written).
`--original` also copies the generated ticks into the original design's table.
"""

import argparse
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench import databases, machine, stats
from bench.databases import QUERIES
from collector.maintenance import candle_updates
from collector.writer import QUERIES as COLLECTOR_QUERIES
from datatracker.storage import QUERIES as STORAGE_QUERIES
from datatracker.storage import mode_of_license

EXCHANGES = 25
# One statement per hour of ticks: 600k rows at 10k pairs, small enough to show progress.
STATEMENT_SPAN = timedelta(hours=1)


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


def seed_for(seed: int, start: datetime) -> float:
    """A setseed() value in [-1, 1] fixed by the seed and the span's start."""
    return (int(start.timestamp()) // 60 * 2_654_435_761 + seed) % 2_000_001 / 1_000_000 - 1


def generate_ticks(
    conn: psycopg.Connection, start: datetime, stop: datetime, seed: int, original: bool
) -> None:
    """Write every market's ticks in [start, stop), span by span, each seeded on its own."""
    for begin, end in spans(start, stop):
        with conn.transaction():
            conn.execute(QUERIES["seed_random"], {"seed": seed_for(seed, begin)})
            conn.execute(QUERIES["generate_ticks"], {"start": begin, "stop": end})
            if original:
                conn.execute(QUERIES["copy_to_original_prices"], {"start": begin, "stop": end})


def refresh_candles(conn: psycopg.Connection, since: datetime) -> None:
    """Bring the 5-minute and hourly candles up to date from `since`, as the collector does."""
    license_row = conn.execute(STORAGE_QUERIES["timescaledb_license"]).fetchone()
    mode = mode_of_license(license_row[0] if license_row else None)
    for query, params in candle_updates(mode, since, datetime.now(UTC)):
        conn.execute(COLLECTOR_QUERIES[query], params)


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
        conn.execute(
            QUERIES["generate_markets"],
            {"pairs": pairs, "exchanges": EXCHANGES, "first_seen": start, "last_seen": stop},
        )
        ranges = missing_ranges(conn, start, stop)
        for begin, end in ranges:
            generate_ticks(conn, begin, end, seed, original)
        ticks_seconds = time.monotonic() - started
        if ranges and candles:
            refresh_candles(conn, min(begin for begin, _ in ranges))
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
