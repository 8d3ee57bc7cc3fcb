"""What Prometheus metrics cost `/prices` (issue 20): the API with API_METRICS=true beside the
same API with API_METRICS=false.

Both run at once (`python -m api`, `--workers` processes each; with more than one, metrics
go through prometheus-client's multiprocess mode), each warmed by requesting every pair once.
Then `--runs` rounds, each loading one and then the other with `GET /prices/{exchange}/{symbol}`
on `--pairs` random stored pairs at `--clients` keep-alive clients for `--seconds` (the order
alternating between rounds), so drifts of the shared machine fall on both: requests/s, p50
and p99 of each (median, min-max over runs) and the ratio of the medians, metrics on / off
(the issue's target: at least 0.95). On a machine the load generator and other work share,
the server's CPU time per request (user + system, its worker processes', from /proc) says
the same with less noise: its ratio, off / on, is the throughput ratio a CPU-bound server
would show. No cycles are written meanwhile: every answer is a held
window. A scrape of the metrics API's `/metrics` follows each of its runs, timed.

With `--wrk`, `wrk` loads them instead of our Python generator (bench.outside's `run_wrk`:
`--clients` connections, `--threads` threads, a random stored pair each request; p50 and p99
from wrk's latency histogram), which costs the shared machine less CPU per request and so
distorts the ratio less (RESULTS.md, "From outside"). `wrk` must be on PATH.

Then, with `--in-process-rounds` > 0, the same without HTTP, the load generator or other
processes in the way: both apps (`create_app`, metrics on and off) in this process, each
warmed on the first `--in-process-pairs` pairs, called as ASGI apps on hot `/prices` requests
in alternating rounds of `--in-process-requests`: this process's CPU time per request (the
app's own cost, and what metrics add to it), median and min-max over rounds.

Generate the data first: `python -m bench.generate --pairs 10000 --days 1`.
"""

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import databases, machine, servers, stats
from bench.http_load import ACCEPT_GZIP, get, run_load, warm
from bench.read_path import sample_markets
from bench.servers import process_tree_rss

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (uvicorn's workers), from
    /proc/<pid>/stat."""
    total = 0
    for member in process_tree_rss(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICKS_PER_SECOND


def load(
    port: int, pid: int, paths: Sequence[str], args: argparse.Namespace, scratch: Path | None
) -> dict[str, Any]:
    """One run on one API, with the server's CPU time per request: by wrk when `scratch`
    holds its script and paths (`--wrk`), else by our Python generator."""
    cpu = cpu_seconds(pid)
    if scratch is not None:
        from bench.outside import run_wrk  # bench.outside imports this module

        options = argparse.Namespace(**vars(args), connections=args.clients)
        result = run_wrk(port, options, "gzip" if args.accept_gzip else "identity", scratch)
        del result["wrk_output"]
    else:
        result = asyncio.run(
            run_load(
                port,
                paths,
                clients=args.clients,
                seconds=args.seconds,
                max_requests=args.max_requests,
                seed=args.seed,
                grace=args.grace,
                common=ACCEPT_GZIP if args.accept_gzip else "",
            )
        )
    result["server_cpu_us_per_request"] = (cpu_seconds(pid) - cpu) / result["requests"] * 1e6
    result["load_average"] = machine.load_average()
    return result


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median and min-max of each figure over the runs."""
    figures: dict[str, Any] = {}
    for key in ("requests_per_second", "p50_ms", "p99_ms", "server_cpu_us_per_request"):
        figures[key] = stats.summary([float(run[key]) for run in runs])
    figures["errors"] = sum(int(run.get("errors", 0)) for run in runs)
    return figures


SETTINGS = {"on": "true", "off": "false"}


def scope_for(path: str, gzip: bool) -> dict[str, Any]:
    """An HTTP scope for GET `path`, as uvicorn would make it."""
    headers = [(b"host", b"127.0.0.1")] + ([(b"accept-encoding", b"gzip")] if gzip else [])
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}  # fmt: skip


async def in_process(url: str, paths: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    """Both apps in this process, hot /prices requests called directly: CPU µs a request."""
    from api.app import create_app  # only this part needs the API's code
    from datatracker.settings import load_settings

    statuses: dict[int, int] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    async def requests(app: Any, count: int) -> float:
        started = time.process_time()
        for index in range(count):
            await app(scope_for(paths[index % len(paths)], args.accept_gzip), receive, send)
        return (time.process_time() - started) / count * 1e6

    apps = {
        name: create_app(
            load_settings(
                _env_file=None,
                database_url=url,
                api_metrics=value == "true",
                api_windows_mb=1024,
                log_level="WARNING",
            )
        )
        for name, value in SETTINGS.items()
    }
    rounds: dict[str, list[float]] = {name: [] for name in apps}
    async with apps["on"].lifespan(), apps["off"].lifespan():
        await asyncio.sleep(2.0)  # both listeners connect
        for app in apps.values():
            await requests(app, len(paths))  # warm: every pair read once, then held
        statuses.clear()
        for run in range(args.in_process_rounds):
            order = ("on", "off") if run % 2 == 0 else ("off", "on")
            for name in order:
                rounds[name].append(await requests(apps[name], args.in_process_requests))
                print("in process", name, round(rounds[name][-1], 2), "µs CPU", flush=True)
    result: dict[str, Any] = {name: stats.summary(values) for name, values in rounds.items()}
    result["rounds"], result["statuses"] = rounds, statuses
    result["pairs"], result["requests_per_round"] = len(paths), args.in_process_requests
    result["cpu_ratio_off_on"] = result["off"]["median"] / result["on"]["median"]
    return result


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_overhead", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_tracker"))
    parser.add_argument("--pairs", type=int, default=10_000, help="random pairs requested")
    parser.add_argument("--seconds", type=float, default=20.0, help="each run")
    parser.add_argument("--runs", type=int, default=3, help="rounds, each loading both APIs")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="API_WORKERS of both APIs")
    parser.add_argument("--max-requests", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--accept-gzip", action="store_true", help="clients accept gzip")
    parser.add_argument("--http", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--wrk", action="store_true", help="load the HTTP part with wrk")
    parser.add_argument("--threads", type=int, default=1, help="wrk's threads (-t)")
    parser.add_argument("--in-process-rounds", type=int, default=0, help="0: not that part")
    parser.add_argument("--in-process-pairs", type=int, default=10_000)
    parser.add_argument("--in-process-requests", type=int, default=20_000)
    parser.add_argument("--output", type=Path, help="write the figures as JSON")
    return parser.parse_args(argv)


def wrk_scratch(directory: Path, paths: Sequence[str]) -> Path:
    """`directory` with what bench.outside's `run_wrk` reads: its Lua script and the paths."""
    from bench.outside import WRK_SCRIPT  # bench.outside imports this module

    (directory / "paths.txt").write_text("\n".join(paths) + "\n")
    (directory / "paths.lua").write_text(WRK_SCRIPT)
    return directory


def http(args: argparse.Namespace, paths: Sequence[str]) -> dict[str, Any]:
    """Both APIs as processes, loaded over HTTP in turn."""
    result: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    scrapes: list[dict[str, float]] = []
    settings = {"API_WORKERS": str(args.workers), "API_WINDOWS_MB": "1024"}
    with (
        tempfile.TemporaryDirectory() as directory,
        servers.tracker_api(args.database_url, **settings, API_METRICS="true") as (on, on_pid),
        servers.tracker_api(args.database_url, **settings, API_METRICS="false") as (off, off_pid),
    ):
        scratch = wrk_scratch(Path(directory), paths) if args.wrk else None
        ports, pids = {"on": on, "off": off}, {"on": on_pid, "off": off_pid}
        for name, port in ports.items():
            result[f"warm_{name}"] = warm(port, paths, args.clients, rounds=args.workers)
            print("warm", name, result[f"warm_{name}"]["seconds"], flush=True)
        for run in range(args.runs):
            order = ("on", "off") if run % 2 == 0 else ("off", "on")
            for name in order:
                figures = load(ports[name], pids[name], paths, args, scratch)
                runs[name].append(figures)
                shown = ("requests_per_second", "p50_ms", "p99_ms", "server_cpu_us_per_request")
                print(name, {key: round(figures[key], 2) for key in shown}, flush=True)
                if name == "on":
                    started = time.perf_counter()
                    status, _, body = get(on, "/metrics")
                    scrapes.append(
                        {
                            "status": status,
                            "seconds": time.perf_counter() - started,
                            "bytes": len(body),
                        }
                    )
    result["runs"] = runs
    result["on"], result["off"] = summary(runs["on"]), summary(runs["off"])
    result["ratio_on_off"] = (
        result["on"]["requests_per_second"]["median"]
        / result["off"]["requests_per_second"]["median"]
    )
    result["cpu_ratio_off_on"] = (
        result["off"]["server_cpu_us_per_request"]["median"]
        / result["on"]["server_cpu_us_per_request"]["median"]
    )
    result["ratio_rounds"] = [
        on["requests_per_second"] / off["requests_per_second"]
        for on, off in zip(runs["on"], runs["off"], strict=True)
    ]
    result["cpu_ratio_rounds"] = [
        off["server_cpu_us_per_request"] / on["server_cpu_us_per_request"]
        for on, off in zip(runs["on"], runs["off"], strict=True)
    ]
    result["scrapes"] = scrapes
    print(
        f"metrics on: {result['on']['requests_per_second']['median']:.0f} req/s, "
        f"off: {result['off']['requests_per_second']['median']:.0f} req/s, "
        f"ratio {result['ratio_on_off']:.3f}; server CPU per request ratio off/on "
        f"{result['cpu_ratio_off_on']:.3f}",
        flush=True,
    )
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.wrk and args.http and shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")
    markets = sample_markets(args.database_url, args.pairs, args.seed)
    paths = [f"/prices/{exchange}/{symbol}" for exchange, symbol in markets]
    result: dict[str, Any] = {
        "machine": machine.describe(args.database_url),
        "pairs": len(paths),
        "clients": args.clients,
        "workers": args.workers,
        "seconds": args.seconds,
        "accept_gzip": args.accept_gzip,
        "load_generator": f"wrk -t {args.threads}" if args.wrk else "bench.http_load",
        "load_average_before": machine.load_average(),
    }
    if args.http:
        result["http"] = http(args, paths)
    if args.in_process_rounds:
        part = asyncio.run(in_process(args.database_url, paths[: args.in_process_pairs], args))
        result["in_process"] = part
        print(
            f"in process: {part['on']['median']:.1f} µs CPU a request with metrics, "
            f"{part['off']['median']:.1f} without; ratio off/on {part['cpu_ratio_off_on']:.3f}",
            flush=True,
        )
    result["load_average_after"] = machine.load_average()
    stats.save(result, args.output)
    return result


if __name__ == "__main__":
    main()
