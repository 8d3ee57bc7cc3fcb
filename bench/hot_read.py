"""Hot windows (issue 12): `/prices` and `/rankings` at scale while cycles commit, beside a
minimal Litestar app.

Starts the real API (`python -m api`, API_WORKERS=1) on `--database-url` while a cycle of
ticks for every stored pair commits every `--cycle-every` seconds (60, the collector's
cadence), written as the collector writes them (`collector.writer.TickWriter.write` inside
`writer.transaction(conn)`, which names the span so the API advances its windows), followed
by the stored ranking's refresh (`refresh_rankings()`). Then, in one run:

1. warms the windows: every requested pair once (timed), and reads `/health`'s
   `price_windows` / `price_windows_mb` and the API's RSS;
2. loads `/prices/{exchange}/{symbol}` (random pairs among `--pairs`, `--clients`
   keep-alive clients) for `--seconds`: requests/s, p50 and p99 overall, in the minute after
   each cycle's commit and in its first `--after-seconds` (where the windows are advanced
   and the bodies re-encoded);
3. `/rankings?limit=100` for `--short-seconds`;
4. 304s: right after a cycle, reads the current ETag of `--etag-pairs` pairs and loads them
   with `If-None-Match` for `--short-seconds`;
5. `/prices` again for `--short-seconds` beside the minimal app (`bench.minimal_app`, the same
   uvicorn options, a constant body: one of the API's own answers) loaded just after it;
6. the API with API_WORKERS=`--workers`, warmed and loaded for `--short-seconds`.

With `--accept-gzip` every client sends `Accept-Encoding: gzip`, as browsers and most HTTP
libraries do, and gets the kept compressed answer as it is; without it (as curl) the API
inflates it for each request, and the minimal app sends the plain body.

`--api-env KEY=VALUE` sets more of the API's environment (e.g. API_WINDOWS_MB=32) for
every API started. Generate the data first: `python -m bench.generate --pairs 10000 --days 1`.
"""

import argparse
import asyncio
import math
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import databases, machine, servers, stats
from bench.http_load import ACCEPT_GZIP, Tally, get, health, run_load, warm
from bench.read_path import sample_markets
from bench.servers import process_tree_rss, serving_rss
from collector.sources.simulated import quote_decimals
from collector.ticks import Tick
from collector.writer import QUERIES as COLLECTOR_QUERIES
from collector.writer import TickWriter

# Every stored pair with its newest price (where the cycles' random walk starts).
MARKETS_WITH_PRICES = """
SELECT m.exchange, m.symbol, m.base, m.quote, coalesce(latest.price, 1.0)
FROM markets AS m
LEFT JOIN LATERAL (
    SELECT price FROM ticks WHERE market_id = m.id ORDER BY time DESC LIMIT 1
) AS latest ON true
ORDER BY m.id
"""


@dataclass
class Cycle:
    """One cycle written during the run: when it began, committed and its ranking was stored
    (time.monotonic()), and how many ticks it wrote."""

    started: float
    committed: float
    ranked: float
    ticks: int


@dataclass
class Cycles:
    """The cycles written so far, and the writer's error if it stopped."""

    done: list[Cycle] = field(default_factory=list)
    error: str | None = None


async def cycle_markets(conn: psycopg.AsyncConnection[Any]) -> list[list[Any]]:
    """Every stored pair as [exchange, symbol, base, quote, newest price, price decimals]."""
    cursor = await conn.execute(MARKETS_WITH_PRICES)
    return [[*row, quote_decimals(float(row[4]))] for row in await cursor.fetchall()]


async def commit_cycle(
    conn: psycopg.AsyncConnection[Any],
    markets: list[list[Any]],
    rng: random.Random,
    at: datetime,
    writer: TickWriter,
) -> Cycle:
    """Write a tick for every pair at `at` (each price a small random step from its last, kept
    in `markets`) the collector's way, commit, then refresh the stored ranking."""
    ticks = []
    for market in markets:
        market[4] = round(float(market[4]) * math.exp(rng.gauss(0.0, 0.001)), market[5])
        ticks.append(Tick(at, market[0], market[1], market[2], market[3], market[4]))
    started = time.monotonic()
    async with writer.transaction(conn):
        await writer.write(conn, ticks)
    committed = time.monotonic()
    await conn.execute(COLLECTOR_QUERIES["refresh_rankings"])
    return Cycle(started, committed, time.monotonic(), len(ticks))


async def write_cycles(url: str, every: float, stop: threading.Event, cycles: Cycles) -> None:
    """Write a cycle of every stored pair at each multiple of `every` seconds until `stop`."""
    rng = random.Random(12)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        markets = await cycle_markets(conn)
        writer = TickWriter()
        while not stop.is_set():
            now = time.time()
            instant = (math.floor(now / every) + 1) * every
            if stop.wait(instant - now):
                return
            at = datetime.fromtimestamp(instant, UTC)
            cycles.done.append(await commit_cycle(conn, markets, rng, at, writer))


@contextmanager
def cycling(url: str, every: float) -> Iterator[Cycles]:
    """Commit a cycle every `every` seconds (0: never) in a thread while the block runs."""
    cycles, stop = Cycles(), threading.Event()

    def run() -> None:
        try:
            asyncio.run(write_cycles(url, every, stop, cycles))
        except Exception as error:  # reported in the result, the load goes on
            cycles.error = repr(error)

    thread = threading.Thread(target=run, daemon=True) if every > 0 else None
    if thread is not None:
        thread.start()
    try:
        yield cycles
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=120)


def latency_split(tally: Tally, cycles: Sequence[Cycle], after: float) -> dict[str, Any]:
    """p50/p99 of the requests sent in the minute after each commit (up to the next one) and
    in its first `after` seconds, together and per cycle."""
    minute: list[float] = []
    first: list[float] = []
    per_cycle = []
    commits = [cycle.committed for cycle in cycles]
    for index, commit in enumerate(commits):
        end = min([commit + 60.0, *commits[index + 1 : index + 2]])
        inside = [
            latency
            for latency, sent in zip(tally.latencies, tally.sent_at, strict=True)
            if commit <= sent < end
        ]
        early = [
            latency
            for latency, sent in zip(tally.latencies, tally.sent_at, strict=True)
            if commit <= sent < min(end, commit + after)
        ]
        if not inside:
            continue
        minute += inside
        first += early
        per_cycle.append(
            {
                "cycle": index,
                "minute": percentiles(inside),
                f"first_{after:g}_s": percentiles(early),
            }
        )
    return {"minute_after": percentiles(minute), f"first_{after:g}_s": percentiles(first)} | {
        "per_cycle": per_cycle
    }


def percentiles(latencies: Sequence[float]) -> dict[str, float | int]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "p50_ms": stats.percentile(ordered, 0.50) * 1000,
        "p99_ms": stats.percentile(ordered, 0.99) * 1000,
        "max_ms": (ordered[-1] if ordered else math.nan) * 1000,
    }


def load(
    port: int,
    paths: Sequence[str],
    args: argparse.Namespace,
    seconds: float,
    headers: dict[str, str] | None = None,
    tally: Tally | None = None,
) -> dict[str, Any]:
    result = asyncio.run(
        run_load(
            port,
            paths,
            clients=args.clients,
            seconds=seconds,
            max_requests=args.max_requests,
            seed=args.seed,
            grace=args.grace,
            headers=headers,
            common=ACCEPT_GZIP if args.accept_gzip else "",
            tally=tally,
        )
    )
    result["load_average"] = machine.load_average()
    return result


def show(name: str, result: dict[str, Any]) -> None:
    figures = ("requests_per_second", "p50_ms", "p99_ms", "statuses", "errors")
    print(name, {key: result[key] for key in figures if key in result}, flush=True)


def profile(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling `pid` for `seconds` (collapsed stacks), if installed."""
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        print("py-spy not installed: no profile")
        return None
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
               "--rate", "250", "--format", "raw", "--output", str(output),
               "--nonblocking"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def next_commit_after(cycles: Cycles, count: int, timeout: float) -> None:
    """Wait until more than `count` cycles have committed (or `timeout` seconds pass)."""
    deadline = time.monotonic() + timeout
    while len(cycles.done) <= count and time.monotonic() < deadline and cycles.error is None:
        time.sleep(0.1)


def one_worker(
    url: str, paths: list[str], args: argparse.Namespace, cycles: Cycles, scratch: Path
) -> dict[str, Any]:
    """Steps 1-5 of the module's docstring on the API with one worker; returns the figures and
    leaves one of its bodies in scratch/body.json for the minimal app."""
    result: dict[str, Any] = {}
    settings = dict(args.api_env) | {"API_WORKERS": "1"}
    with servers.tracker_api(url, **settings) as (port, pid):
        result["rss_idle_bytes"] = servers.resident_bytes(pid)
        result["warm"] = warm(port, paths, args.clients)
        result["health_after_warm"] = health(port)
        result["rss_after_warm_bytes"] = servers.resident_bytes(pid)
        print("warm", result["warm"]["seconds"], result["health_after_warm"], flush=True)
        status, _, body = get(port, paths[0], gzip=args.accept_gzip)
        (scratch / "body.json").write_bytes(body)
        result["body_bytes"], result["body_status"] = len(body), status

        before = len(cycles.done)
        profiler = profile(pid, args.seconds, args.profile_api) if args.profile_api else None
        tally = Tally()
        started = time.monotonic()
        prices = load(port, paths, args, args.seconds, tally=tally)
        during = [c for c in cycles.done[before:] if started <= c.committed]
        prices |= latency_split(tally, during, args.after_seconds)
        prices["cycles"] = [
            {
                "write_s": c.committed - c.started,
                "ranking_s": c.ranked - c.committed,
                "at_s": c.committed - started,
                "ticks": c.ticks,
            }
            for c in during
        ]
        result["prices"] = prices
        show("prices", prices)
        if profiler is not None:
            profiler.wait(timeout=60)
        result["health_after_load"] = health(port)
        result["rss_after_load_bytes"] = servers.resident_bytes(pid)
        if args.skip_compare:
            return result

        result["rankings"] = load(port, ["/rankings?limit=100"], args, args.short_seconds)
        show("rankings", result["rankings"])

        # 304s: the ETags read right after a commit stay current until the next one.
        next_commit_after(cycles, len(cycles.done), args.cycle_every + 30)
        time.sleep(1.0)
        etags = {}
        for path in paths[: args.etag_pairs]:
            _, headers, _ = get(port, path, gzip=args.accept_gzip)
            if "etag" in headers:
                etags[path] = f"If-None-Match: {headers['etag']}"
        result["not_modified"] = load(port, list(etags), args, args.short_seconds, headers=etags)
        show("not_modified", result["not_modified"])

        result["prices_beside_minimal"] = load(port, paths, args, args.short_seconds)
        show("prices_beside_minimal", result["prices_beside_minimal"])
    return result


def minimal(paths: list[str], args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """The minimal app with the API's body, loaded as the API was."""
    port = servers.free_port()
    body = str(scratch / "body.json")
    command = ["-m", "bench.minimal_app", "--port", str(port), "--body-file", body]
    command += ["--gzip"] if args.accept_gzip else []
    with servers.serving(command, port, {}) as pid:
        result = load(port, paths, args, args.short_seconds)
        result["rss_bytes"] = servers.resident_bytes(pid)
    show("minimal", result)
    return result


def many_workers(url: str, paths: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The API with API_WORKERS=--workers: warmed (a round per worker), then loaded."""
    settings = dict(args.api_env) | {"API_WORKERS": str(args.workers)}
    with servers.tracker_api(url, **settings) as (port, pid):
        result: dict[str, Any] = {"workers": args.workers}
        result["warm"] = warm(port, paths, args.clients, rounds=args.workers)
        result |= load(port, paths, args, args.short_seconds)
        result["health"] = [health(port) for _ in range(4)]
        result["rss_bytes_by_pid"] = process_tree_rss(pid)
        result["rss_serving_bytes"] = serving_rss(pid)
    show(f"prices_workers_{args.workers}", result)
    return result


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_read", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_tracker"))
    parser.add_argument("--pairs", type=int, default=10_000, help="random pairs requested")
    parser.add_argument("--seconds", type=float, default=180.0, help="the main /prices run")
    parser.add_argument("--short-seconds", type=float, default=20.0, help="each other run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="API_WORKERS of the last run")
    parser.add_argument("--cycle-every", type=float, default=60.0, help="0: no cycles")
    parser.add_argument("--after-seconds", type=float, default=5.0)
    parser.add_argument("--etag-pairs", type=int, default=1_000)
    parser.add_argument("--max-requests", type=int, default=10_000_000)
    parser.add_argument("--grace", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--api-env",
        type=lambda text: tuple(text.split("=", 1)),
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more of the API's environment, e.g. API_WINDOWS_MB=32 (repeatable)",
    )
    parser.add_argument(
        "--accept-gzip",
        action="store_true",
        help="clients send Accept-Encoding: gzip (as browsers and most HTTP libraries do); the "
        "minimal app then answers the API's gzip body",
    )
    parser.add_argument("--skip-compare", action="store_true", help="steps 1-2 only")
    parser.add_argument("--profile-api", type=Path, help="py-spy collapsed stacks, main run")
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run what the options describe; print and return the figures."""
    args = parse(argv)
    url = args.database_url
    markets = sample_markets(url, args.pairs, args.seed)
    paths = [f"/prices/{exchange}/{symbol}" for exchange, symbol in markets]
    result: dict[str, Any] = {"machine": machine.describe(url), "options": vars(args)}
    with psycopg.connect(url) as conn:
        row = conn.execute(databases.QUERIES["stored_range"]).fetchone() or ()
        result["data"] = dict(zip(("oldest", "newest", "markets"), row, strict=False))
    with cycling(url, args.cycle_every) as cycles, tempfile.TemporaryDirectory() as scratch:
        result["one_worker"] = one_worker(url, paths, args, cycles, Path(scratch))
        if not args.skip_compare:
            result["minimal"] = minimal(paths, args, Path(scratch))
            result["many_workers"] = many_workers(url, paths, args)
        result["cycles_error"] = cycles.error
    one = result["one_worker"]
    if not args.skip_compare:
        api_rate = one["prices_beside_minimal"]["requests_per_second"]
        result["one_worker_vs_minimal"] = api_rate / result["minimal"]["requests_per_second"]
        result["many_workers_gain"] = result["many_workers"]["requests_per_second"] / api_rate
    result["load_after"] = machine.load_average()
    print(
        {
            key: result[key]
            for key in ("one_worker_vs_minimal", "many_workers_gain")
            if key in result
        }
    )
    stats.save(result, args.output)
    return result


if __name__ == "__main__":
    main()
