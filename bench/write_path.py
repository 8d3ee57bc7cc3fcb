"""Write path: ticks per second through the collector's TickWriter against the original way.

For each cycle size the collector's real write function (`TickWriter.write`, one set-based
statement per cycle) writes one cycle that registers the markets, then `--cycles` steady
cycles whose seconds are summarised (median, min-max). The original way writes the same
ticks one INSERT and one commit each into a plain table; it is capped (`--original-rows`,
`--original-seconds`) and its rate extrapolated to the cycle's size. Both run on the same
database in the same run; `ratio` is the original's seconds over the tracker's.
"""

import argparse
import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench import databases, machine, stats
from bench.databases import QUERIES
from collector.ticks import Tick
from collector.writer import QUERIES as COLLECTOR_QUERIES
from collector.writer import TickWriter
from datatracker.storage import QUERIES as STORAGE_QUERIES

TICK_COUNTS = (1_000, 10_000, 50_000, 200_000)
EXCHANGES = 25
# Cycles fall on minutes from here; every cycle size has markets and a day of its own, so a
# size's candle roll-up sees only its own ticks.
ANCHOR = datetime(2025, 1, 1, tzinfo=UTC)


def cycle_ticks(count: int, cycle: int) -> list[Tick]:
    """The `count` ticks of one cycle: the same markets every cycle, prices moving a little."""
    at = ANCHOR + timedelta(days=TICK_COUNTS.index(count) if count in TICK_COUNTS else 9)
    at += timedelta(minutes=cycle)
    return [
        Tick(
            at,
            f"wx{i % EXCHANGES:02d}",
            f"s{count}p{i // EXCHANGES}usd",
            f"S{count}P{i // EXCHANGES}",
            "USD",
            1.0 + (i % 997) + cycle * 0.001,
        )
        for i in range(count)
    ]


async def roll_up_seconds(conn: psycopg.AsyncConnection, at: datetime) -> float | None:
    """Seconds of the Apache-mode candle roll-up the collector runs after a cycle, if any."""
    if "roll_up_candles_5m" not in COLLECTOR_QUERIES:
        return None
    started = time.perf_counter()
    await conn.execute(COLLECTOR_QUERIES["roll_up_candles_5m"], {"since": at})
    await conn.execute(COLLECTOR_QUERIES["roll_up_candles_1h"], {"since": at})
    return time.perf_counter() - started


async def time_tracker(url: str, count: int, cycles: int, roll_up: bool) -> dict[str, object]:
    """Seconds of the registering cycle, of each steady cycle, and of the roll-ups after them."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        writer = TickWriter()
        started = time.perf_counter()
        await writer.write(conn, cycle_ticks(count, 0))
        first = time.perf_counter() - started
        steady, roll_ups = [], []
        for cycle in range(1, cycles + 1):
            ticks = cycle_ticks(count, cycle)  # built outside the clock, as normalise() does
            started = time.perf_counter()
            await writer.write(conn, ticks)
            steady.append(time.perf_counter() - started)
            seconds = await roll_up_seconds(conn, ticks[0].time) if roll_up else None
            if seconds is not None:
                roll_ups.append(seconds)
    return {"first_cycle_seconds": first, "seconds": steady, "roll_up_seconds": roll_ups}


def time_original(url: str, ticks: Sequence[Tick], max_seconds: float) -> tuple[int, float]:
    """Write ticks the original way until done or `max_seconds` pass: (rows, seconds)."""
    with psycopg.connect(url) as conn:
        written, started = 0, time.perf_counter()
        for tick in ticks:
            row = {"exchange": tick.exchange, "symbol": tick.symbol, "price": tick.price}
            conn.execute(QUERIES["insert_original_price"], row | {"updated_at": tick.time})
            conn.commit()
            written += 1
            elapsed = time.perf_counter() - started
            if elapsed >= max_seconds:
                break
    return written, elapsed


def original_rates(url: str, count: int, runs: int, rows: int, seconds: float) -> list[float]:
    """Ticks per second of the original way, one figure per run of at most `rows` ticks."""
    rates = []
    for run in range(runs):
        written, elapsed = time_original(url, cycle_ticks(count, run)[:rows], seconds)
        rates.append(written / elapsed)
    return rates


def compare(url: str, count: int, args: argparse.Namespace) -> dict[str, object]:
    """Both ways for one cycle size: the tracker's seconds and rate, the original's, the ratio."""
    tracker = asyncio.run(time_tracker(url, count, args.cycles, not args.skip_roll_up))
    seconds = stats.summary(tracker["seconds"])  # type: ignore[arg-type]
    rates = original_rates(url, count, args.runs, args.original_rows, args.original_seconds)
    original = stats.summary(rates)
    return {
        "ticks": count,
        "tracker_seconds": seconds,
        "tracker_ticks_per_second": count / seconds["median"],
        "tracker_first_cycle_seconds": tracker["first_cycle_seconds"],
        "roll_up_seconds": stats.summary(tracker["roll_up_seconds"]),  # type: ignore[arg-type]
        "original_ticks_per_second": original,
        "original_seconds_extrapolated": count / original["median"],
        "ratio": count / original["median"] / seconds["median"],
    }


def reset(url: str) -> None:
    """Empty the tables the benchmark writes, candles too where they are plain tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(QUERIES["reset_written"])
        if "roll_up_candles_5m" in COLLECTOR_QUERIES:
            license_row = conn.execute(STORAGE_QUERIES["timescaledb_license"]).fetchone()
            if not (license_row and license_row[0] == "timescale"):
                conn.execute(QUERIES["reset_candles"])


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.write_path", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_write"))
    parser.add_argument("--ticks", type=int, nargs="+", default=list(TICK_COUNTS))
    parser.add_argument("--cycles", type=int, default=7, help="steady cycles per size")
    parser.add_argument("--runs", type=int, default=3, help="runs of the original way per size")
    parser.add_argument("--original-rows", type=int, default=5_000)
    parser.add_argument("--original-seconds", type=float, default=20.0)
    parser.add_argument(
        "--skip-roll-up", action="store_true", help="no candle roll-up after each cycle"
    )
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


def report(rows: list[dict[str, object]]) -> None:
    """Print one line per cycle size."""
    print(f"{'ticks':>8} {'tracker s (min-max)':>26} {'ticks/s':>10} {'orig ticks/s':>13} ratio")
    for row in rows:
        s, o = row["tracker_seconds"], row["original_ticks_per_second"]
        print(
            f"{row['ticks']:>8} {s['median']:>8.4f} ({s['min']:.4f}-{s['max']:.4f}) "  # type: ignore[index]
            f"{row['tracker_ticks_per_second']:>10.0f} {o['median']:>13.0f} "  # type: ignore[index]
            f"{row['ratio']:>5.0f}x"
        )


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Run the write benchmark the options describe; print and return the figures."""
    args = parse(argv)
    url = databases.prepare(args.database_url)
    reset(url)
    before = machine.describe(url)
    rows = [compare(url, count, args) for count in args.ticks]
    result = {"machine": before, "load_after": machine.load_average(), "sizes": rows}
    report(rows)
    stats.save(result, args.output)
    return result


if __name__ == "__main__":
    main()
