"""Write path: ticks per second through the collector's TickWriter against the original way.

For each cycle size the collector's real write function (`TickWriter.write`, one set-based
statement per cycle) writes one cycle that registers the markets, then `--cycles` steady
cycles whose seconds are summarised (median, min-max). The original way writes the same
ticks one INSERT and one commit each into a plain table, twice per run: through the
SQLAlchemy ORM as the original design did (`orm`), and through raw psycopg with a prepared
INSERT (`raw`, a lower bound on the original's cost). Each is capped (`--original-rows`,
`--original-seconds`) and its rate extrapolated to the cycle's size. All run on the same
database in the same run; each way's `ratio` is its seconds over the tracker's.
"""

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import DateTime
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bench import databases, machine, stats
from bench.databases import QUERIES
from collector.maintenance import candle_updates
from collector.ticks import Tick
from collector.writer import QUERIES as COLLECTOR_QUERIES
from collector.writer import TickWriter
from datatracker.storage import QUERIES as STORAGE_QUERIES
from datatracker.storage import detect_storage_mode, mode_of_license

TICK_COUNTS = (1_000, 10_000, 50_000, 200_000)
EXCHANGES = 25
# Cycles fall on minutes from here; every cycle size has markets and 4 hours of its own, so a
# size's candle roll-up sees only its own ticks. Within the last day: the database refuses a
# service's ticks from before the raw retention horizon or the future (migration 0006), and
# chunks older than a day may be compressed on the Timescale-License edition.
ANCHOR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=20)
SPAN = timedelta(hours=4)


class Base(DeclarativeBase):
    """The original design's ORM models."""


class OriginalPrice(Base):
    """A row of `original_prices` (created by bench/queries.sql), mapped as the original did."""

    __tablename__ = "original_prices"

    id: Mapped[int] = mapped_column(primary_key=True)
    exchange: Mapped[str]
    symbol: Mapped[str]
    price: Mapped[float]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def cycle_ticks(count: int, cycle: int) -> list[Tick]:
    """The `count` ticks of one cycle: the same markets every cycle, prices moving a little."""
    at = ANCHOR + SPAN * (TICK_COUNTS.index(count) if count in TICK_COUNTS else len(TICK_COUNTS))
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
    """Seconds of the Apache-mode candle roll-up the collector runs after a cycle (None in
    timescale mode, where the database's policies materialise the candles)."""
    if await detect_storage_mode(conn) != "apache":
        return None
    started = time.perf_counter()
    for query, params in candle_updates("apache", at, at):
        await conn.execute(COLLECTOR_QUERIES[query], params)
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


def orm_url(url: str) -> sqlalchemy.URL:
    """The SQLAlchemy URL (`postgresql+psycopg://…`) of a psycopg conninfo."""
    params = {key: str(value) for key, value in conninfo_to_dict(url).items()}
    port = params.pop("port", None)
    return sqlalchemy.URL.create(
        "postgresql+psycopg",
        username=params.pop("user", None),
        password=params.pop("password", None),
        host=params.pop("host", None),
        port=int(port) if port else None,
        database=params.pop("dbname", None),
        query=params,  # the rest (sslmode, …) as query options
    )


def one_by_one(
    ticks: Sequence[Tick], write: Callable[[Tick], None], max_seconds: float
) -> tuple[int, float]:
    """Call `write` on each tick until done or `max_seconds` pass: (ticks written, seconds)."""
    written, started, elapsed = 0, time.perf_counter(), 0.0
    for tick in ticks:
        write(tick)
        written += 1
        elapsed = time.perf_counter() - started
        if elapsed >= max_seconds:
            break
    return written, elapsed


def time_orm(
    engine: sqlalchemy.Engine, ticks: Sequence[Tick], max_seconds: float
) -> tuple[int, float]:
    """Write ticks the ORM way (add, commit) until done or `max_seconds` pass: (rows, seconds)."""
    with Session(engine) as session:

        def write(tick: Tick) -> None:
            price = OriginalPrice(
                exchange=tick.exchange, symbol=tick.symbol, price=tick.price, updated_at=tick.time
            )
            session.add(price)
            session.commit()

        return one_by_one(ticks, write, max_seconds)


def time_raw(url: str, ticks: Sequence[Tick], max_seconds: float) -> tuple[int, float]:
    """Write ticks the raw psycopg way until done or `max_seconds` pass: (rows, seconds)."""
    with psycopg.connect(url) as conn:

        def write(tick: Tick) -> None:
            row = {"exchange": tick.exchange, "symbol": tick.symbol, "price": tick.price}
            conn.execute(QUERIES["insert_original_price"], row | {"updated_at": tick.time})
            conn.commit()

        return one_by_one(ticks, write, max_seconds)


def original_rates(
    url: str, count: int, runs: int, rows: int, seconds: float
) -> dict[str, list[float]]:
    """Ticks per second of the ORM and raw ways, one figure each per run of at most `rows` ticks.

    Within a run both write the same ticks, one after the other, so the machine's load of the
    moment weighs on both alike.
    """
    rates: dict[str, list[float]] = {"orm": [], "raw": []}
    engine = sqlalchemy.create_engine(orm_url(url))
    try:
        with engine.connect():  # connected outside the clock, as the raw way is
            pass
        for run in range(runs):
            ticks = cycle_ticks(count, run)[:rows]
            written, elapsed = time_orm(engine, ticks, seconds)
            rates["orm"].append(written / elapsed)
            written, elapsed = time_raw(url, ticks, seconds)
            rates["raw"].append(written / elapsed)
    finally:
        engine.dispose()
    return rates


def original_figures(way: str, rates: list[float], count: int, tracker: float) -> dict[str, object]:
    """One original way's rate (median, min-max), extrapolated seconds and ratio to the tracker."""
    rate = stats.summary(rates)
    seconds = count / rate["median"]
    return {
        f"original_{way}_ticks_per_second": rate,
        f"original_{way}_seconds_extrapolated": seconds,
        f"original_{way}_ratio": seconds / tracker,
    }


def compare(url: str, count: int, args: argparse.Namespace) -> dict[str, object]:
    """All ways for one cycle size: the tracker's seconds and rate, each original's, the ratios."""
    tracker = asyncio.run(time_tracker(url, count, args.cycles, not args.skip_roll_up))
    seconds = stats.summary(tracker["seconds"])  # type: ignore[arg-type]
    rates = original_rates(url, count, args.runs, args.original_rows, args.original_seconds)
    return {
        "ticks": count,
        "tracker_seconds": seconds,
        "tracker_ticks_per_second": count / seconds["median"],
        "tracker_first_cycle_seconds": tracker["first_cycle_seconds"],
        "roll_up_seconds": stats.summary(tracker["roll_up_seconds"]),  # type: ignore[arg-type]
        **original_figures("orm", rates["orm"], count, seconds["median"]),
        **original_figures("raw", rates["raw"], count, seconds["median"]),
    }


def reset(url: str) -> None:
    """Empty the tables the benchmark writes, candles too where they are plain tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(QUERIES["reset_written"])
        license_row = conn.execute(STORAGE_QUERIES["timescaledb_license"]).fetchone()
        if mode_of_license(license_row[0] if license_row else None) == "apache":
            conn.execute(QUERIES["reset_candles"])


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.write_path", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_write"))
    parser.add_argument("--ticks", type=int, nargs="+", default=list(TICK_COUNTS))
    parser.add_argument("--cycles", type=int, default=7, help="steady cycles per size")
    parser.add_argument("--runs", type=int, default=3, help="runs of the original ways per size")
    parser.add_argument("--original-rows", type=int, default=5_000)
    parser.add_argument("--original-seconds", type=float, default=20.0)
    parser.add_argument(
        "--skip-roll-up", action="store_true", help="no candle roll-up after each cycle"
    )
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


def rate_and_ratio(row: dict[str, Any], way: str) -> str:
    """One original way's `ticks/s (min-max) ratio` for the printed table."""
    rate, ratio = row[f"original_{way}_ticks_per_second"], row[f"original_{way}_ratio"]
    spread = f"{rate['median']:.0f} ({rate['min']:.0f}-{rate['max']:.0f})"
    return f"{spread:>24} {ratio:>8.0f}x"


def report(rows: list[dict[str, Any]]) -> None:
    """Print one line per cycle size."""
    print(
        f"{'ticks':>8} {'tracker s (min-max)':>26} {'ticks/s':>10} "
        f"{'ORM per-row ticks/s':>24} {'vs ORM':>9} {'raw per-row ticks/s':>24} {'vs raw':>9}"
    )
    for row in rows:
        s = row["tracker_seconds"]
        print(
            f"{row['ticks']:>8} {s['median']:>8.4f} ({s['min']:.4f}-{s['max']:.4f}) "
            f"{row['tracker_ticks_per_second']:>10.0f} "
            f"{rate_and_ratio(row, 'orm')} {rate_and_ratio(row, 'raw')}"
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
