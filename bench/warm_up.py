"""Bulk warm-up (issue 18, item 1): how soon the API holds every window after it starts, and
what `/prices` answers in the meantime; then the same after a change that drops every window
(an announcement the API cannot understand, which reloads everything in bulk).

Starts the real API (`python -m api`, API_WORKERS=1) on `--database-url`; from the moment its
`/health` answers, loads `GET /prices/{exchange}/{symbol}` on random stored pairs at
`--clients` keep-alive clients for `--seconds`, while `/health` is read every 0.1 s to time
when `price_windows` reaches every stored pair (or stops growing once API_WINDOWS_MB is full).
Reports requests/s, p50 and p99 over the whole run and for each of its first seconds
(`--buckets`), and the time until all windows were held. Then sends `NOTIFY
datatracker_changes` with a payload no trigger sends, as the database's owner, and measures
the same again. The machine's load average is recorded with each run (the machine may be
shared). `--api-checkout DIR` serves the API from another tree, to measure it beside this
one. Generate the data first: `python -m bench.generate --pairs 10000 --days 1`.
"""

import argparse
import asyncio
import json
import threading
import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg

from bench import databases, machine, servers, stats
from bench.http_load import ACCEPT_GZIP, Tally, health, run_load

HEALTH_EVERY_SECONDS = 0.1


def stored_pairs(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT exchange, symbol FROM markets ORDER BY id").fetchall()
    return [f"/prices/{exchange}/{symbol}" for exchange, symbol in rows]


def watch_windows(port: int, pairs: int, began: float, stop: threading.Event) -> dict[str, Any]:
    """Read /health until every pair's window is held (or `stop`): when, and what it said."""
    seen: dict[str, Any] = {"all_held_after_seconds": None, "samples": []}
    last = -1
    while not stop.is_set():
        state = health(port)
        at = time.monotonic() - began
        held = int(state.get("price_windows", 0))
        if held != last:
            seen["samples"].append([round(at, 2), held, state.get("price_windows_mb")])
            last = held
        if held >= pairs:
            seen["all_held_after_seconds"] = round(at, 2)
            break
        time.sleep(HEALTH_EVERY_SECONDS)
    seen["last_health"] = health(port)
    return seen


def measured(port: int, paths: list[str], args: argparse.Namespace, began: float) -> dict[str, Any]:
    """The load for `--seconds` from `began`, with /health watched meanwhile."""
    stop = threading.Event()
    windows: dict[str, Any] = {}
    watcher = threading.Thread(
        target=lambda: windows.update(watch_windows(port, len(paths), began, stop)), daemon=True
    )
    watcher.start()
    tally = Tally()
    common = ACCEPT_GZIP if args.accept_gzip else ""
    summary = asyncio.run(
        run_load(
            port,
            paths,
            clients=args.clients,
            seconds=args.seconds,
            max_requests=10**9,
            tally=tally,
            common=common,
        )
    )
    stop.set()
    watcher.join(timeout=30)
    buckets = []
    edges = [0.0, *args.buckets, args.seconds]
    for low, high in pairwise(edges):
        inside = [
            latency
            for latency, sent in zip(tally.latencies, tally.sent_at, strict=True)
            if low <= sent - began < high
        ]
        buckets.append({"from": low, "to": high, **percentiles(inside, high - low)})
    return {
        "summary": summary,
        "buckets": buckets,
        "windows": windows,
        "load_average": machine.load_average(),
    }


def percentiles(latencies: Sequence[float], seconds: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    if not ordered:
        return {"requests": 0}
    return {
        "requests": len(ordered),
        "requests_per_second": round(len(ordered) / seconds, 1),
        "p50_ms": round(stats.percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(stats.percentile(ordered, 0.99) * 1000, 2),
    }


def until_health(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if health(port).get("database") == "reachable":
            return
        time.sleep(0.02)
    raise RuntimeError("the API's /health did not answer")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=databases.database_url("bench_tracker"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--buckets", type=float, nargs="*", default=[2.0, 5.0, 10.0])
    parser.add_argument("--accept-gzip", action="store_true")
    parser.add_argument("--api-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--api-checkout", type=Path, default=servers.REPO)
    parser.add_argument("--output", type=Path)
    return parser.parse_args(argv)


def show(name: str, result: dict[str, Any]) -> None:
    summary = result["summary"]
    print(
        f"{name}: {summary['requests_per_second']:.0f} req/s, p50 {summary['p50_ms']:.2f} ms,"
        f" p99 {summary['p99_ms']:.2f} ms; all windows held after"
        f" {result['windows'].get('all_held_after_seconds')} s; load {result['load_average']}"
    )
    for bucket in result["buckets"]:
        print(f"  {bucket}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    url = args.database_url
    paths = stored_pairs(url)
    env = {"API_WORKERS": "1"} | dict(pair.split("=", 1) for pair in args.api_env)
    results: dict[str, Any] = {
        "machine": machine.describe(url),
        "api_checkout": "this tree"
        if args.api_checkout == servers.REPO
        else args.api_checkout.name,
        "pairs": len(paths),
    }
    with servers.tracker_api(url, args.api_checkout, **env) as (port, _pid):
        until_health(port)
        results["start"] = measured(port, paths, args, time.monotonic())
        show("after start", results["start"])
        with psycopg.connect(url, autocommit=True) as owner:
            began = time.monotonic()
            owner.execute("NOTIFY datatracker_changes, 'not a payload any trigger sends'")
        results["reload"] = measured(port, paths, args, began)
        show("after a full reload", results["reload"])
    if args.output:
        args.output.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
