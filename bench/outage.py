"""Outage recovery: the API under load while its database is stopped and started for real.

A throwaway cluster of this run's own (`tests/private_cluster.py`: initdb into a temporary
directory, TimescaleDB preloaded in `--edition`, a free port) gets the deployment's schema and
roles and an hour of simulated prices (`python -m collector backfill`, as `collector`). The API
(`python -m api` as `api`, `--workers` processes) then serves `GET /prices/{exchange}/{symbol}`
to `--clients` closed-loop keep-alive clients while, `--runs` times, the cluster is stopped
(`pg_ctl stop -m fast`) for `--outage-seconds` and started again (`pg_ctl start -w`, which
returns once it accepts connections). Per run: the slowest answer while it was stopping; the
answers while it was stopped (statuses; p50, p99 and max latency of the 503s) and, from the
moment it accepted connections again, the time to the first 200 and to the last answer that
was not a 200. The worst run is what counts.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench import machine, stats
from bench.http_load import Tally, run_load
from bench.servers import REPO, tracker_api
from datatracker.schema import migrate
from tests.conftest import as_role, bootstrap, execute
from tests.private_cluster import PrivateCluster, private_cluster

# Load before the stop, around the outage.
BEFORE_SECONDS = 3.0


def seed(url: str, pairs: int) -> list[str]:
    """An hour of simulated minute prices for `pairs` pairs on kraken and okx, written by the
    collector's backfill as `collector`; the /prices paths of every pair."""
    env = os.environ | {
        "DATABASE_URL": as_role(url, "collector"),
        "PRICE_SOURCE": "simulated",
        "SUPPORTED_EXCHANGES": "kraken,okx",
        "SIMULATED_PAIRS_PER_EXCHANGE": str(pairs),
        "PYTHONPATH": str(REPO),
    }
    subprocess.run(
        [sys.executable, "-m", "collector", "backfill", "--hours", "1"],
        env=env,
        check=True,
        capture_output=True,
    )
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT exchange, symbol FROM markets ORDER BY id").fetchall()
    return [f"/prices/{exchange}/{symbol}" for exchange, symbol in rows]


def count(statuses: Iterable[int]) -> dict[int, int]:
    """How many of each status."""
    counts: dict[int, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


def summarise_run(tally: Tally, stopping: float, stopped: float, ready: float) -> dict[str, Any]:
    """The answers to requests sent while the database was stopping, and while it was
    stopped until it accepted connections again; the times from then to the first 200 and
    past the last answer but 200."""
    answers = list(zip(tally.sent_at, tally.latencies, tally.answered, strict=True))
    stopping_ms = [seconds * 1000 for sent, seconds, _ in answers if stopping <= sent < stopped]
    stopping_statuses = count(status for sent, _, status in answers if stopping <= sent < stopped)
    after_statuses = count(status for sent, _, status in answers if sent >= ready)
    during = sorted(
        (seconds, status, sent) for sent, seconds, status in answers if stopped <= sent < ready
    )
    refused = [(seconds, sent) for seconds, status, sent in during if status == 503]
    latencies = [seconds for seconds, _ in refused]
    statuses = count(status for _, status, _ in during)
    after = sorted((sent + seconds, status) for sent, seconds, status in answers if sent >= ready)
    first_ok = next((done for done, status in after if status == 200), None)
    last_not_ok = max((done for done, status in after if status != 200), default=ready)
    return {
        "stopping_seconds": stopped - stopping,
        "stopping_requests": len(stopping_ms),
        "stopping_max_ms": max(stopping_ms, default=None),
        "stopping_statuses": stopping_statuses,
        "during_requests": len(during),
        "during_statuses": statuses,
        "during_p50_ms": stats.percentile(latencies, 0.5) * 1000 if latencies else None,
        "during_p99_ms": stats.percentile(latencies, 0.99) * 1000 if latencies else None,
        "during_max_ms": latencies[-1] * 1000 if latencies else None,
        # When the slowest 503 was sent, in seconds since the stop (the outage's length: ready).
        "during_max_sent_s": refused[-1][1] - stopped if refused else None,
        "ready_after_stop_s": ready - stopped,
        # Of any status: a request sent as the server came back may wait for a connection.
        "during_slowest_ms": during[-1][0] * 1000 if during else None,
        "first_200_s": None if first_ok is None else max(0.0, first_ok - ready),
        "all_200_after_s": last_not_ok - ready,
        "after_requests": len(after),
        "after_statuses": after_statuses,
    }


async def one_outage(
    cluster: PrivateCluster, port: int, paths: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Load the API, stop the cluster for the outage, start it, keep loading; summarise."""
    tally = Tally()
    seconds = BEFORE_SECONDS + args.outage_seconds + args.after_seconds + 5
    load = asyncio.create_task(
        run_load(
            port, paths, clients=args.clients, seconds=seconds, max_requests=10**9, tally=tally
        )
    )
    await asyncio.sleep(BEFORE_SECONDS)
    stopping = time.monotonic()
    await asyncio.to_thread(cluster.stop)
    stopped = time.monotonic()
    await asyncio.sleep(args.outage_seconds)
    await asyncio.to_thread(cluster.start)
    ready = time.monotonic()
    await load
    run = summarise_run(tally, stopping, stopped, ready)
    run["load_errors"] = tally.errors
    return run


def worst(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst of the runs on each measure."""

    def largest(key: str) -> float | None:
        values = [run[key] for run in runs if run[key] is not None]
        return max(values) if values else None

    return {
        "stopping_max_ms": largest("stopping_max_ms"),
        "during_p99_ms": largest("during_p99_ms"),
        "during_max_ms": largest("during_max_ms"),
        "during_slowest_ms": largest("during_slowest_ms"),
        "first_200_s": None
        if any(run["first_200_s"] is None for run in runs)
        else largest("first_200_s"),
        "all_200_after_s": largest("all_200_after_s"),
        "non_503_during": sum(
            n for run in runs for status, n in run["during_statuses"].items() if int(status) != 503
        ),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with private_cluster(args.edition) as cluster:
        execute(cluster.url(), "CREATE DATABASE {}", "datatracker")
        url = cluster.url("datatracker")
        bootstrap(url)
        migrate(url)
        paths = seed(url, args.pairs)
        measured_on = machine.describe(url)
        runs = []
        checkout = Path(args.api_checkout) if args.api_checkout else REPO
        with tracker_api(as_role(url, "api"), checkout, API_WORKERS=str(args.workers)) as (port, _):
            for number in range(1, args.runs + 1):
                run = asyncio.run(one_outage(cluster, port, paths, args))
                runs.append(run)
                print(
                    f"run {number}: stopping {run['stopping_seconds']:.2f} s "
                    f"{run['stopping_statuses']} "
                    f"(max {run['stopping_max_ms']} ms); during {run['during_statuses']} "
                    f"503 p99 {run['during_p99_ms']:.1f} ms max {run['during_max_ms']:.1f} ms "
                    f"(slowest of all {run['during_slowest_ms']:.1f} ms); "
                    f"first 200 after {run['first_200_s']} s, "
                    f"all 200 after {run['all_200_after_s']:.2f} s",
                    flush=True,
                )
    return {
        "benchmark": "outage",
        "edition": args.edition,
        "api_checkout": args.api_checkout or "this checkout",
        "clients": args.clients,
        "workers": args.workers,
        "outage_seconds": args.outage_seconds,
        "after_seconds": args.after_seconds,
        "pairs": 2 * args.pairs,
        "machine": measured_on,
        "runs": runs,
        "worst": worst(runs),
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.outage", description=__doc__)
    parser.add_argument("--edition", choices=["apache", "timescale"], default="apache")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument(
        "--after-seconds", type=float, default=15.0, help="load after the start, at least"
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="API_WORKERS")
    parser.add_argument("--pairs", type=int, default=50, help="pairs per exchange (2 exchanges)")
    parser.add_argument("--api-checkout", help="serve the API from this tree (a baseline)")
    parser.add_argument("--output", help="write the result as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    result = measure(args)
    print(json.dumps(result["worst"], indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
