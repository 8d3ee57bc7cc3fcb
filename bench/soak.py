"""Soak: 200 clients on `/prices` and `/rankings` for 60 s while the collector writes.

Builds (or tops up to the current minute) `bench_soak` with 24 hours of minute ticks for
`--pairs` pairs (`bench.generate`'s set-based SQL) and applies the current schema; starts
the real API (`python -m api`) and the real collector (`python -m collector`, simulated
prices) from this checkout; waits for the collector's first cycle and stored ranking; then,
timed so that a cycle falls inside the window, holds `--clients` closed-loop keep-alive clients
on loopback: most on `/prices/{exchange}/{symbol}` (random stored pairs), the rest on
`/rankings?limit=100`. Reports requests/s, p50/p99 per endpoint, statuses and errors; exits 1
if any request failed or answered anything but 200, or no cycle was written during the load.
"""

import argparse
import asyncio
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import databases, generate, machine, servers, stats
from bench.http_load import LOOPBACK, run_load
from bench.read_path import sample_markets

RANKINGS_PATH = "/rankings?limit=100"
COLLECTOR_EXCHANGES = ("binance", "coinbase", "kraken", "bitstamp", "okx")
# The collector's log lines the report keeps (cycle written, ranking refreshed), and the bad ones.
CYCLE_LINE = re.compile(r"cycle (\S+): (\d+) ticks written .* in ([\d.]+) s of database time")
RANKING_LINE = re.compile(r"rankings: (\d+) pairs in ([\d.]+) s")
TROUBLE_LINE = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback")


def collector_environment(url: str, args: argparse.Namespace) -> dict[str, str]:
    """The settings `python -m collector` reads for a soak: simulated prices, DEBUG for timings."""
    return {
        "DATABASE_URL": url,
        "PRICE_SOURCE": "simulated",
        "SUPPORTED_EXCHANGES": ",".join(COLLECTOR_EXCHANGES),
        "SIMULATED_PAIRS_PER_EXCHANGE": str(args.collector_pairs),
        "COLLECT_INTERVAL_SECONDS": str(args.collect_interval),
        "LOG_LEVEL": "DEBUG",  # the ranking refresh's duration is a DEBUG line
    }


@contextmanager
def collector_running(
    url: str, args: argparse.Namespace, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m collector` from this checkout, logging to `log`; yield it, then stop it."""
    with tempfile.TemporaryDirectory() as scratch, log.open("wb") as sink:  # no stray .env
        env = os.environ | collector_environment(url, args) | {"PYTHONPATH": str(servers.REPO)}
        process = subprocess.Popen(
            [sys.executable, "-m", "collector"], cwd=scratch, env=env, stdout=sink, stderr=sink
        )
        try:
            yield process
        finally:
            process.terminate()
            process.wait(timeout=30)


def get_json(port: int, path: str) -> Any:
    """One GET on the API over loopback, its JSON body (control requests, not the load)."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=60) as response:
        return json.load(response)


def ranking_as_of(port: int) -> datetime | None:
    """The end of the stored ranking's window (None before the collector's first refresh)."""
    as_of = get_json(port, "/rankings?limit=1")["as_of"]
    return datetime.fromisoformat(as_of) if as_of else None


def newest_tick(port: int) -> datetime | None:
    """The newest stored tick's time, from `/health`."""
    newest = get_json(port, "/health")["newest_tick"]
    return datetime.fromisoformat(newest) if newest else None


def wait_for_ranking(
    port: int, since: datetime, seconds: float, collector: subprocess.Popen[bytes]
) -> None:
    """Return once the collector has stored a ranking after `since`; raise if it takes too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        as_of = ranking_as_of(port)
        if as_of is not None and as_of >= since:
            return
        if collector.poll() is not None:
            raise RuntimeError(f"the collector exited with {collector.returncode}")
        time.sleep(1)
    raise RuntimeError(f"no ranking stored by the collector within {seconds:g} s")


def sleep_until_before_cycle(interval: int, lead: float) -> None:
    """Sleep until `lead` seconds before a cycle instant, so the load window holds that cycle."""
    now = time.time()
    instant = math.ceil(now / interval) * interval
    if instant - now < lead:
        instant += interval
    time.sleep(instant - lead - now)


async def mixed_load(
    port: int, targets: dict[str, tuple[list[str], int]], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """All targets' clients at once (name → (paths, clients)); a result per target."""
    budget = {
        name: max(1, args.max_requests * n // args.clients) for name, (_, n) in targets.items()
    }
    runs = [
        run_load(port, paths, clients=n, seconds=args.seconds, max_requests=budget[name],
                 seed=args.seed + i, grace=args.grace)
        for i, (name, (paths, n)) in enumerate(targets.items())
    ]  # fmt: skip
    return dict(zip(targets, await asyncio.gather(*runs), strict=True))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> dict[str, float]:
    """CPU seconds of the whole machine so far, from /proc/stat: busy, stolen by the host, all."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0]
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, first.split()[1:9])
    hz = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq  # guest time is already counted in user
    total = busy + idle + iowait + steal
    return {"machine": busy / hz, "stolen": steal / hz, "all": total / hz}


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process and of the whole machine."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()} | machine_cpu()


def cores_used(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Cores each process kept busy between two snapshots; `machine` is every process together,
    `stolen` what the host took from this VM."""
    return {
        name: round((after[name] - before[name]) / seconds, 2) for name in before if name != "all"
    }


def collector_report(log: Path) -> dict[str, Any]:
    """The cycles and ranking refreshes the collector logged, its warnings and errors, its log."""
    lines = log.read_text(errors="replace").splitlines()
    cycles = [m.groups() for m in map(CYCLE_LINE.search, lines) if m]
    refreshes = [m.groups() for m in map(RANKING_LINE.search, lines) if m]
    return {
        "cycles": [{"at": at, "ticks": int(n), "db_seconds": float(s)} for at, n, s in cycles],
        "ranking_refreshes": [{"pairs": int(n), "seconds": float(s)} for n, s in refreshes],
        "trouble": [line for line in lines if TROUBLE_LINE.search(line)][:20],
        "log": lines[:500],
    }


def failures(result: dict[str, Any]) -> list[str]:
    """Why the soak failed: failed requests, answers other than 200, no cycle during the load."""
    found = []
    for name, load in result["http"].items():
        if load["errors"]:
            found.append(f"{name}: {load['errors']} clients failed (error or no answer in time)")
        bad = {status: n for status, n in load["statuses"].items() if status != 200}
        if bad:
            found.append(f"{name}: answers other than 200: {bad}")
    if not result["cycle_during_load"]:
        found.append("the collector wrote no cycle during the load")
    return found


def print_report(result: dict[str, Any]) -> None:
    """The table of the run, then the collector's figures and the verdict."""
    print(f"{'endpoint':<10} {'clients':>7} {'requests':>9} {'req/s':>8} {'p50 ms':>9} "
          f"{'p99 ms':>9} {'max ms':>9}  statuses, errors")  # fmt: skip
    for name, r in result["http"].items():
        print(f"{name:<10} {r['clients']:>7} {r['requests']:>9} {r['requests_per_second']:>8.1f} "
              f"{r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} {r['max_ms']:>9.1f}  "
              f"{r['statuses']}, {r['errors']}")  # fmt: skip
    print(f"total {result['requests_per_second']:.1f} requests/s; load average after "
          f"{result['load_after']}; cores used during the load (of {os.cpu_count()}): "
          f"{result['cores_used']}")  # fmt: skip
    print(f"collector: cycles {result['collector']['cycles']}; ranking refreshes "
          f"{result['collector']['ranking_refreshes']}")  # fmt: skip
    for line in result["collector"]["trouble"]:
        print("collector:", line)
    print("FAILED: " + "; ".join(result["failures"]) if result["failures"] else "OK")


def soak(url: str, args: argparse.Namespace, paths: list[str], log: Path) -> dict[str, Any]:
    """Start the collector and the API, wait for a stored ranking, load them; the figures."""
    rankings_clients = round(args.clients * args.rankings_share)
    targets = {
        "prices": (paths, args.clients - rankings_clients),
        "rankings": ([RANKINGS_PATH], rankings_clients),
    }
    targets = {name: target for name, target in targets.items() if target[1] > 0}
    with ExitStack() as stack:
        started = datetime.now(UTC)
        collector = stack.enter_context(collector_running(url, args, log))
        port, api_pid = stack.enter_context(servers.tracker_api(url))
        wait_for_ranking(port, started, 2 * args.collect_interval + args.setup_timeout, collector)
        sleep_until_before_cycle(args.collect_interval, lead=min(10.0, args.seconds / 3))
        before = {"newest_tick": newest_tick(port), "ranking_as_of": ranking_as_of(port)}
        load_before = machine.load_average()
        pids = {"api": api_pid, "collector": collector.pid, "load_generator": os.getpid()}
        cpu_before, clock = cpu_snapshot(pids), time.monotonic()
        http = asyncio.run(mixed_load(port, targets, args))
        cpu = cores_used(cpu_before, cpu_snapshot(pids), time.monotonic() - clock)
        after = {"newest_tick": newest_tick(port), "ranking_as_of": ranking_as_of(port)}
        api_rss = servers.resident_bytes(api_pid)
    elapsed = max(load["seconds"] for load in http.values())
    old, new = before["newest_tick"], after["newest_tick"]
    written = old is not None and new is not None and new > old
    return {
        "http": http,
        "requests_per_second": sum(load["requests"] for load in http.values()) / elapsed,
        "before": before,
        "after": after,
        "cycle_during_load": written,
        "load_before": load_before,
        "load_after": machine.load_average(),
        "cores_used": cpu,
        "api_rss_bytes": api_rss,
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_soak"))
    parser.add_argument("--pairs", type=int, default=5_000, help="pairs with 24 h of ticks")
    parser.add_argument("--fresh", action="store_true", help="drop and rebuild the database")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rankings-share", type=float, default=0.2, help="of the clients")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=500_000, help="budget of the run")
    parser.add_argument("--grace", type=float, default=30.0, help="wait for in-flight requests")
    parser.add_argument("--sample", type=int, default=1_000, help="random pairs requested")
    parser.add_argument("--collector-pairs", type=int, help="per exchange (5); default pairs/5")
    parser.add_argument("--collect-interval", type=int, default=60, help="seconds, 1-60")
    parser.add_argument("--setup-timeout", type=float, default=300.0, help="for the first cycle")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    if not 1 <= args.collect_interval <= 60:
        parser.error("--collect-interval must be 1-60 so that a cycle falls inside the load")
    if args.collector_pairs is None:
        args.collector_pairs = max(1, min(10_000, args.pairs // len(COLLECTOR_EXCHANGES)))
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the soak the options describe; print and return the figures and `failures`."""
    args = parse(argv)
    url = databases.prepare(args.database_url, fresh=args.fresh)  # applies the current schema
    generated = generate.generate(url, pairs=args.pairs, days=1.0, seed=args.seed)
    markets = sample_markets(url, args.sample, args.seed)
    paths = [f"/prices/{exchange}/{symbol}" for exchange, symbol in markets]
    result: dict[str, Any] = {"machine": machine.describe(url), "data": generated}
    result["options"] = {k: v for k, v in vars(args).items() if k not in ("output", "database_url")}
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "collector.log"
        result |= soak(url, args, paths, log)
        result["collector"] = collector_report(log)
    result["failures"] = failures(result)
    print_report(result)
    stats.save(result, args.output)
    return result


if __name__ == "__main__":
    sys.exit(1 if main()["failures"] else 0)
