"""Read path: `/prices/{exchange}/{symbol}` and `/rankings` over HTTP beside the original read.

Starts the real API (`python -m api`) twice, with its response cache (the default) and without
(`API_CACHE_MB=0`), and the original read (`bench.original_api`: the ORM's query on
`original_prices`, stdev in Python) as separate processes on loopback; loads each with 1, 8
and 64 closed-loop clients picking random pairs (seeded), and reports requests per second, p50
and p99 as medians over `--runs` runs with min-max. While it loads, a change of the data is
announced every `--announce-every` seconds (10; a collector announces one a minute), which
empties the cache, so the cached figures include the misses that follow each cycle. It also
times each named query alone (psycopg, no HTTP), which shows where a request's time goes in
the database. Generate the data first: `python -m bench.generate --pairs 10000 --days 1
--original`.
"""

import argparse
import asyncio
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString

import psycopg

from api.routes import QUERIES as API_QUERIES
from api.windows import QUERIES as WINDOW_QUERIES
from bench import databases, machine, servers, stats
from bench.databases import QUERIES
from bench.http_load import run_load

CLIENTS = (1, 8, 64)
# How long after writing a cycle the collector stores its ranking at 10k pairs (bench/RESULTS.md).
RANKING_REFRESH_SECONDS = 1.2


def sample_markets(url: str, count: int, seed: int) -> list[tuple[str, str]]:
    """`count` (exchange, symbol) pairs picked at random, the same for the same seed."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(QUERIES["seed_random"], {"seed": seed / 1000 % 1})
        return [
            (exchange, symbol)
            for exchange, symbol in conn.execute(QUERIES["random_markets"], {"count": count})
        ]


def has_rankings(url: str, checkout: Path) -> bool:
    """Whether the API of `checkout` serves /rankings and the database has its function."""
    if not (checkout / "api" / "rankings.py").exists() or "rankings" not in API_QUERIES:
        return False
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regproc('volatility_ranking') IS NOT NULL").fetchone()
    return bool(row and row[0])


def median_ms(run: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median and min-max milliseconds of `repeats` calls."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append((time.perf_counter() - started) * 1000)
    return stats.summary(seconds)


def query_timings(
    url: str, markets: Sequence[tuple[str, str]], repeats: int, rankings: bool
) -> dict[str, dict[str, float]]:
    """Milliseconds of each named query a request runs, alone and fetched, on random pairs."""
    rng = random.Random(7)
    page = {"by": "cv", "exchange": None, "limit": 100, "offset": 0}
    with psycopg.connect(url, autocommit=True, options="-c TimeZone=UTC") as conn:
        since = datetime.now(UTC) - timedelta(hours=24)
        pairs = [
            {"exchange": exchange, "symbol": symbol, "since": since} for exchange, symbol in markets
        ]

        def timed(
            query: LiteralString, binary: bool = False, fixed: dict[str, Any] | None = None
        ) -> Callable[[], object]:
            def run() -> object:
                return conn.execute(query, fixed or rng.choice(pairs), binary=binary).fetchall()

            return run

        named = {
            # What /prices runs for a pair it does not hold in memory (api/windows.py).
            "price_window": timed(WINDOW_QUERIES["price_window"], binary=True),
            "original_price_history": timed(QUERIES["original_price_history"]),
        }
        if rankings:
            named["rankings"] = timed(API_QUERIES["rankings"], fixed=page)
        slow = {"original_price_history"}
        return {
            name: median_ms(run, max(3, repeats // 10) if name in slow else repeats)
            for name, run in named.items()
        }


@contextmanager
def announcing_changes(url: str, every: float) -> Iterator[None]:
    """Announce a collection cycle's changes every `every` seconds while the block runs, as the
    collector's statements do (its ticks, then RANKING_REFRESH_SECONDS later its ranking), so
    that the API's response cache is emptied that often; 0: never."""
    done = threading.Event()

    def announce() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not done.wait(every):
                conn.execute("NOTIFY datatracker_changes, 'ticks'")
                done.wait(RANKING_REFRESH_SECONDS)
                conn.execute("NOTIFY datatracker_changes, 'rankings_window'")

    thread = threading.Thread(target=announce, daemon=True) if every > 0 else None
    if thread is not None:
        thread.start()
    try:
        yield
    finally:
        done.set()
        if thread is not None:
            thread.join()


def profile_api(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes] | None:
    """Start py-spy sampling the API process for `seconds` (collapsed stacks), if installed."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("py-spy not installed: no profile")
        return None
    command = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(output),
        "--nonblocking",
    ]
    # A fixed command line: py-spy from PATH and our own arguments.
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def load(port: int, paths: Sequence[str], clients: int, args: argparse.Namespace) -> dict[str, Any]:
    """One timed run of `clients` clients against one server."""
    return asyncio.run(
        run_load(
            port,
            paths,
            clients=clients,
            seconds=args.seconds,
            max_requests=args.max_requests,
            seed=args.seed,
            grace=args.grace,
        )
    )


def measure(url: str, args: argparse.Namespace, targets: dict[str, list[str]]) -> dict[str, Any]:
    """Every target at every client count, runs interleaved; plus the servers' RSS after."""
    runs: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        tracker_port, tracker_pid = stack.enter_context(servers.tracker_api(url, args.api_checkout))
        uncached_port, _ = stack.enter_context(
            servers.tracker_api(url, args.api_checkout, API_CACHE_MB="0")
        )
        original_port, original_pid = stack.enter_context(servers.original_api(url))
        stack.enter_context(announcing_changes(url, args.announce_every))
        port_of = {
            "original_prices": original_port,
            "prices_uncached": uncached_port,
            "rankings_uncached": uncached_port,
        }
        ports = {name: port_of.get(name, tracker_port) for name in targets}
        for name, paths in targets.items():  # warm-up, not recorded
            asyncio.run(run_load(ports[name], paths, clients=2, seconds=1, max_requests=20))
        profiler = None
        for run in range(args.runs):
            for clients in args.clients:
                for name, paths in targets.items():
                    if run == 0 and clients == 8 and name == "prices" and args.profile_api:
                        profiler = profile_api(tracker_pid, args.seconds, args.profile_api)
                    result = load(ports[name], paths, clients, args)
                    result["load_average"] = machine.load_average()
                    runs.setdefault(f"{name}@{clients}", []).append(result)
                    print(
                        name,
                        clients,
                        {
                            k: result[k]
                            for k in ("requests_per_second", "p50_ms", "p99_ms", "statuses")
                        },
                    )
        rss = {
            "api_bytes": servers.resident_bytes(tracker_pid),
            "original_api_bytes": servers.resident_bytes(original_pid),
        }
    if profiler is not None:
        profiler.wait(timeout=60)
    return {"runs": runs, "rss_after_load": rss}


def summarise_runs(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per target and client count: medians with min-max of rate, p50 and p99."""
    return {
        key: {
            figure: stats.summary([result[figure] for result in results])
            for figure in ("requests_per_second", "p50_ms", "p99_ms")
        }
        | {"requests": sum(result["requests"] for result in results)}
        for key, results in runs.items()
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.read_path", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_tracker"))
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS))
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of one run")
    parser.add_argument("--max-requests", type=int, default=50_000, help="budget of one run")
    parser.add_argument("--grace", type=float, default=60.0, help="wait for in-flight requests")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=1_000, help="random pairs requested")
    parser.add_argument("--query-repeats", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-original", action="store_true")
    parser.add_argument(
        "--announce-every",
        type=float,
        default=10.0,
        help="seconds between change announcements that empty the API's cache (a collector "
        "makes one a minute); 0: none",
    )
    parser.add_argument(
        "--api-checkout",
        type=Path,
        default=servers.REPO,
        help="serve the API from this tree (e.g. `git archive HEAD` unpacked); default this one",
    )
    parser.add_argument("--label", default="", help="e.g. 1d or 7d, copied into the result")
    parser.add_argument("--profile-api", type=Path, help="py-spy collapsed stacks of the API")
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the read benchmark the options describe; print and return the figures."""
    args = parse(argv)
    url = args.database_url
    markets = sample_markets(url, args.pairs, args.seed)
    rankings = has_rankings(url, args.api_checkout)
    prices = [f"/prices/{exchange}/{symbol}" for exchange, symbol in markets]
    targets = {"prices": prices, "prices_uncached": prices}
    if rankings:
        targets["rankings"] = targets["rankings_uncached"] = ["/rankings?limit=100"]
    if not args.skip_original:
        targets["original_prices"] = targets["prices"]
    result: dict[str, Any] = {"label": args.label, "machine": machine.describe(url)}
    result["api_checkout"] = str(args.api_checkout)
    with psycopg.connect(url) as conn:
        result["data"] = dict(
            zip(
                ("oldest", "newest", "markets"),
                conn.execute(QUERIES["stored_range"]).fetchone() or (),
                strict=False,
            )
        )
    result["queries_ms"] = query_timings(url, markets, args.query_repeats, rankings)
    measured = measure(url, args, targets)
    result |= {
        "http": summarise_runs(measured["runs"]),
        "rss_after_load": measured["rss_after_load"],
        "raw_runs": measured["runs"],
        "load_after": machine.load_average(),
    }
    print(
        {
            key: {f: v[f]["median"] for f in ("requests_per_second", "p50_ms", "p99_ms")}
            for key, v in result["http"].items()
        }
    )
    stats.save(result, args.output)
    return result


if __name__ == "__main__":
    main()
