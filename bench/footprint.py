"""Footprint: resident memory of the collector and the API, and bytes per tick on disk.

Memory is measured in fresh processes: the collector's live source with 25 ccxt exchanges
constructed (no network: clients are built, not used), the simulated source after one
written cycle of each `--pairs` scale (25 exchanges x pairs/25), and the API after serving a few
requests. Disk is `hypertable_size('ticks')` over its rows after generating `--hours` of
minute ticks at each `--pairs` scale (TimescaleDB's Apache edition: uncompressed), beside the
original table's bytes per row where the database holds one.
"""

import argparse
import asyncio
import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import databases, generate, machine, servers, stats
from bench.databases import QUERIES
from bench.http_load import run_load

# 25 exchange ids ccxt knows, the five defaults first.
EXCHANGES_25 = (
    "binance", "coinbase", "kraken", "bitstamp", "okx", "bybit", "kucoin", "gate", "bitfinex",
    "htx", "mexc", "bitget", "cryptocom", "gemini", "bitvavo", "poloniex", "upbit", "bithumb",
    "lbank", "whitebit", "bingx", "hitbtc", "phemex", "woo", "xt",
)  # fmt: skip


def own_rss() -> int:
    """This process's resident set size in bytes."""
    return servers.resident_bytes(int(Path("/proc/self/stat").read_text().split()[0]))


def live_collector_rss() -> int:
    """RSS once the live source holds a ccxt client for each of 25 exchanges."""
    from collector.sources.live import LiveSource

    source = LiveSource(EXCHANGES_25, timeout_seconds=20, markets_reload_seconds=3600)
    assert len(source.exchanges) == len(EXCHANGES_25)
    return own_rss()


async def simulated_cycle(url: str, pairs: int) -> int:
    """RSS after the simulated source's cycle over 25 exchanges is written with TickWriter.

    Imports the collector's entry module first, as `python -m collector` does (ccxt included).
    """
    import collector.__main__  # noqa: F401
    from collector.sources.simulated import SimulatedSource
    from collector.ticks import normalise
    from collector.writer import TickWriter

    source = SimulatedSource(EXCHANGES_25, pairs_per_exchange=pairs, seed=42)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    source.advance(at)
    ticks = [t for ex in source.exchanges for t in normalise(ex, at, source.quotes(ex)).ticks]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await TickWriter().write(conn, ticks)
    return own_rss()


def child_rss(argv: Sequence[str]) -> int:
    """Run `python -m bench.footprint --child ...` and read the RSS it prints."""
    command = [sys.executable, "-m", "bench.footprint", "--child", *argv]
    output = subprocess.run(
        command, check=True, capture_output=True, text=True, cwd=servers.REPO
    ).stdout
    return int(json.loads(output.splitlines()[-1])["rss"])


def api_rss(url: str, requests: int) -> int:
    """RSS of `python -m api` after `requests` requests for /health and a pair's prices."""
    with psycopg.connect(url) as conn:
        pair = conn.execute(QUERIES["random_markets"], {"count": 1}).fetchone()
    paths = ["/health"] + ([f"/prices/{pair[0]}/{pair[1]}"] if pair else [])
    with servers.tracker_api(url) as (port, pid):
        asyncio.run(run_load(port, paths, clients=4, seconds=5, max_requests=requests))
        return servers.resident_bytes(pid)


def disk_per_tick(url: str, pairs: int, hours: float) -> dict[str, Any]:
    """Bytes per tick after generating `hours` of ticks for `pairs` markets in an empty table."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(QUERIES["reset_ticks"])
    generate.generate(url, pairs=pairs, days=hours / 24, candles=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE ticks")  # settle the visibility map, as autovacuum would
        rows, size = conn.execute(QUERIES["ticks_footprint"]).fetchone() or (0, 0)
    return {"pairs": pairs, "hours": hours, "rows": rows, "bytes": size,
            "bytes_per_tick": size / rows if rows else None}  # fmt: skip


def original_per_row(url: str) -> dict[str, Any] | None:
    """Bytes per row of original_prices in a database holding it (e.g. bench_tracker)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows, size = conn.execute(QUERIES["original_footprint"]).fetchone() or (0, 0)
    return {"rows": rows, "bytes": size, "bytes_per_row": size / rows} if rows else None


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_footprint"))
    parser.add_argument("--pairs", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--hours", type=float, default=1.0, help="ticks generated per scale")
    parser.add_argument("--simulated-pairs", type=int, default=400, help=argparse.SUPPRESS)
    parser.add_argument("--api-requests", type=int, default=500)
    parser.add_argument("--original-url", help="a database holding original_prices (bench_tracker)")
    parser.add_argument("--child", choices=["live", "simulated"], help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: build what the mode names and print the RSS as JSON."""
    if args.child == "live":
        rss = live_collector_rss()
    else:
        rss = asyncio.run(simulated_cycle(args.database_url, args.simulated_pairs))
    result = {"rss": rss}
    print(json.dumps(result))
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure the footprints the options describe; print and return them."""
    args = parse(argv)
    if args.child:
        return run_child(args)
    url = databases.prepare(args.database_url)
    url_arg = ["--database-url", url]
    result: dict[str, Any] = {"machine": machine.describe(url)}
    result["disk"] = [disk_per_tick(url, pairs, args.hours) for pairs in args.pairs]
    result["memory"] = {"collector_live_25_exchanges_bytes": child_rss(["live", *url_arg])}
    for pairs in args.pairs:  # 25 exchanges of pairs / 25 each
        per_exchange = ["--simulated-pairs", str(max(1, pairs // 25))]
        rss = child_rss(["simulated", *url_arg, *per_exchange])
        result["memory"][f"collector_simulated_{pairs}_pairs_bytes"] = rss
    result["memory"]["api_bytes"] = api_rss(url, args.api_requests)
    if args.original_url:
        result["original"] = original_per_row(args.original_url)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    stats.save(result, args.output)
    return result


if __name__ == "__main__":
    main()
