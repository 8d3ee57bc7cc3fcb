"""Whole-process backfill: `python -m collector backfill` timed from its start to its exit,
against a raw binary COPY of the same rows into an empty ticks table, in the same run.

Each run starts from a fresh database (`bench_backfill`, dropped and created; a database of
another name, such as a test's, is emptied instead) and runs `python -m collector backfill
--hours H` as the role `collector` on simulated prices: `--pairs` markets spread evenly over
`--exchanges`, written with their candles and ranking as a new installation does. The ticks
it wrote are then copied out in binary and copied back, each way timed on its own into the
emptied ticks table (one `COPY … FROM STDIN (FORMAT BINARY)` as `collector`, commit included):
in the order the backfill writes them (`as_written`: grid by grid, each market's minutes
together) and minute by minute (`minute_by_minute`: the order in which cycles write them).
`--baseline-checkout DIR` also times the backfill of another checkout in every run (e.g. `git
worktree add /tmp/before <commit>`), on a fresh database of its own.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench import databases, machine, stats
from bench.databases import QUERIES
from collector.backfill import grid_width
from collector.writer import QUERIES as COLLECTOR_QUERIES
from datatracker.storage import QUERIES as STORAGE_QUERIES
from datatracker.storage import mode_of_license

REPO = Path(__file__).resolve().parent.parent
EXCHANGES = ("binance", "coinbase", "kraken", "bitstamp", "okx")
# How the rows are copied out, by the order they go back in.
ORDERS = {
    "as_written": "time_bucket({width}, time, origin => '1970-01-01 00:00:00+00'), market_id, time",
    "minute_by_minute": "time, market_id",
}
COPY_CHUNK_BYTES = 1 << 20
BACKFILL_LINE = re.compile(r"backfill of .* in ([\d.]+) s")


def collector_env(url: str, args: argparse.Namespace, checkout: Path) -> dict[str, str]:
    """The environment of `python -m collector backfill` from `checkout` (and nothing else:
    no .env is read, the working directory is a scratch one)."""
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(checkout),
        "DATABASE_URL": url,
        "PRICE_SOURCE": "simulated",
        "SUPPORTED_EXCHANGES": ",".join(args.exchanges),
        "SIMULATED_PAIRS_PER_EXCHANGE": str(args.pairs // len(args.exchanges)),
        "LOG_LEVEL": "INFO",
    }


def time_backfill(url: str, args: argparse.Namespace, checkout: Path) -> dict[str, object]:
    """Run the backfill as a process of its own: seconds from its start to its exit, the
    seconds its log gives the backfill alone, its peak RSS and what it logged."""
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as scratch:
        log_path = Path(scratch) / "collector.log"
        command = [sys.executable, "-m", "collector", "backfill", "--hours", str(args.hours)]
        with log_path.open("w") as log:
            started = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=scratch, env=collector_env(url, args, checkout), stderr=log
            )
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        lines = log_path.read_text().splitlines()
    if process.returncode != 0:
        raise RuntimeError(f"backfill exited {process.returncode}: {lines[-5:]}")
    inner = [float(match[1]) for line in lines if (match := BACKFILL_LINE.search(line))]
    return {
        "seconds": seconds,
        "backfill_seconds": inner[0] if inner else None,
        "max_rss_mib": usage.ru_maxrss / 1024,
        "log": [line for line in lines if " INFO " in line],
    }


def stored_ticks(url: str) -> int:
    """How many ticks the database holds."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM ticks").fetchone()
    return int(row[0]) if row else 0


def export(url: str, order: str, path: Path) -> None:
    """Copy every tick out to `path` as binary COPY data, in the given order."""
    query = sql.SQL(
        "COPY (SELECT time, market_id, price, exchange_time FROM ticks ORDER BY {}) "
        "TO STDOUT (FORMAT BINARY)"
    ).format(sql.SQL(order))
    with psycopg.connect(url) as conn, path.open("wb") as out:
        cursor = conn.cursor()
        with cursor.copy(query) as copy:
            for data in copy:
                out.write(data)


def time_copy(admin_url: str, role_url: str, path: Path) -> float:
    """Empty ticks, then time one binary COPY of `path` into it as `role_url`'s role."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("TRUNCATE ticks")
    with psycopg.connect(role_url) as conn, path.open("rb") as data:
        started = time.perf_counter()
        with conn.cursor().copy(COLLECTOR_QUERIES["copy_ticks"]) as copy:
            while chunk := data.read(COPY_CHUNK_BYTES):
                copy.write(chunk)
        conn.commit()
        return time.perf_counter() - started


def fresh_database(url: str) -> None:
    """A database holding the schema and nothing else: a bench_* one is dropped and created,
    another (a test's) emptied."""
    if databases.database_name(url).startswith(databases.OWN_PREFIX):
        databases.prepare(url, fresh=True)
        return
    databases.prepare(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(QUERIES["reset_ticks"])
        license_row = conn.execute(STORAGE_QUERIES["timescaledb_license"]).fetchone()
        if mode_of_license(license_row[0] if license_row else None) == "apache":
            conn.execute(QUERIES["reset_candles"])


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    """One run: the baseline's backfill when asked, this checkout's, then the raw COPYs."""
    role_url = make_conninfo(args.database_url, user=args.role, password=args.role_password)
    result: dict[str, Any] = {}
    if args.baseline_checkout:
        fresh_database(args.database_url)
        result["baseline"] = time_backfill(role_url, args, args.baseline_checkout)
        result["baseline"]["ticks"] = stored_ticks(args.database_url)
    fresh_database(args.database_url)
    result["backfill"] = time_backfill(role_url, args, REPO)
    ticks = result["ticks"] = stored_ticks(args.database_url)
    width = sql.Literal(grid_width(args.pairs)).as_string()
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as scratch:
        for name, order in ORDERS.items():
            path = Path(scratch) / f"{name}.copy"
            export(args.database_url, order.format(width=width), path)
            result[f"copy_{name}_seconds"] = time_copy(args.database_url, role_url, path)
            if stored_ticks(args.database_url) != ticks:
                raise RuntimeError(f"the {name} COPY did not store the {ticks} ticks")
            path.unlink()
    return result


def figures(runs: list[dict[str, Any]], ticks: int) -> dict[str, Any]:
    """Seconds and ticks/s of each way (median, min-max over runs), and the ratios."""
    ways = ["backfill", *(f"copy_{name}" for name in ORDERS)]
    if "baseline" in runs[0]:
        ways.insert(0, "baseline")
    seconds = {
        way: [run[way]["seconds"] if way in ("backfill", "baseline") else run[f"{way}_seconds"]
              for run in runs]
        for way in ways
    }  # fmt: skip
    out: dict[str, Any] = {}
    for way, values in seconds.items():
        out[f"{way}_seconds"] = stats.summary(values)
        out[f"{way}_ticks_per_second"] = stats.summary([ticks / value for value in values])
    backfill = out["backfill_seconds"]["median"]
    for way in ways:
        if way != "backfill":
            out[f"backfill_over_{way}"] = backfill / out[f"{way}_seconds"]["median"]
    return out


def report(result: dict[str, Any]) -> None:
    """Print one line per way."""
    print(f"{result['ticks']:,} ticks ({result['pairs']:,} pairs x {result['hours']:g} h)")
    for key, rate in result.items():
        if key.endswith("_ticks_per_second"):
            way = key.removesuffix("_ticks_per_second")
            seconds = result[f"{way}_seconds"]
            print(
                f"{way:>26}: {seconds['median']:8.1f} s ({seconds['min']:.1f}-{seconds['max']:.1f})"
                f" {rate['median']:>10,.0f} ticks/s"
            )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_backfill"))
    parser.add_argument("--pairs", type=int, default=10_000, help="markets, over all exchanges")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--exchanges", nargs="+", default=list(EXCHANGES))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--role", default="collector", help="the role the backfill and COPY use")
    parser.add_argument("--role-password", default="collector")
    parser.add_argument("--baseline-checkout", type=Path, help="also time this checkout's backfill")
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    if args.pairs % len(args.exchanges):
        parser.error("--pairs must be a multiple of the number of --exchanges")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the backfill benchmark the options describe; print and return the figures."""
    args = parse(argv)
    databases.prepare(args.database_url)
    before = machine.describe(args.database_url)
    runs = [one_run(args) for _ in range(args.runs)]
    ticks = runs[0]["ticks"]
    result = {
        "machine": before,
        "load_after": machine.load_average(),
        "pairs": args.pairs,
        "exchanges": len(args.exchanges),
        "hours": args.hours,
        "ticks": ticks,
        "grid_width": str(grid_width(args.pairs)),
        **figures(runs, ticks),
        "runs": runs,
    }
    report(result)
    stats.save(result, args.output)
    return result


if __name__ == "__main__":
    main()
