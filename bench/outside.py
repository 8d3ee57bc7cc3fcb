"""From outside (issue 18's "Why"): `wrk` against our own load generator, on the API and on the
minimal app, in one run.

Starts the real API (`python -m api`, API_WORKERS=1, as the role `api`) on `--database-url`,
warms its windows (every requested pair once), takes one of its answers (gzip and plain) and
starts the minimal app (`bench.minimal_app`) twice beside it, one sending the gzip body and one
the plain body. Then `--rounds` rounds: for each encoding (`Accept-Encoding: gzip` clients and
identity clients, as curl) and each load generator (`wrk`, run with a Lua script picking random
pairs from a file of paths, and `bench/http_load.py`, our Python generator, in a process of its
own), the API and the minimal app each loaded for `--seconds` at `--connections` connections,
in turns (the order swapped every round, so that the shared machine's load falls on both).
With `--cycle-every-run`, a cycle of every stored pair commits halfway through each run (the
collector's way, `bench.hot_read.commit_cycle`), so both sides carry a cycle's work.

Per run: requests/s, p50 and p99 (wrk's own latency histogram, the figures `--latency`
prints), the CPU seconds per request of the load generator (utime + stime of its process, as
/proc/<pid>/stat counts them, read when it exits) and of the server (/proc), and how busy the
machine's cores were (/proc/stat). Medians over rounds, and the ratio API / minimal app per
encoding and generator: the reader sees what each generator costs, and so why their ratios
differ. `wrk` must be on PATH (Debian: `apt-get install wrk`).

Generate the data first: `python -m bench.generate --pairs 10000 --days 1`.
"""

import argparse
import asyncio
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import databases, machine, servers, stats
from bench.hot_read import Cycle, commit_cycle, cycle_markets
from bench.http_load import ACCEPT_GZIP, LOOPBACK, get, health, warm
from bench.metrics_overhead import cpu_seconds
from bench.read_path import sample_markets
from collector.writer import TickWriter
from tests.conftest import as_role

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
ENCODINGS = ("gzip", "identity")
GENERATORS = ("wrk", "python")

# Each wrk thread reads the paths once (init), then every request takes one at random; done()
# prints wrk's own figures as one JSON line (the percentiles --latency prints, in µs).
WRK_SCRIPT = """
local paths = {}
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(tonumber(args[2]) * 1000 + (id or 0))
end

function request()
  return wrk.format(nil, paths[math.random(#paths)])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, '
    .. '"timeout": %d}}\\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""

# Our generator in a process of its own, so that its CPU is its alone: the figures of
# bench.http_load.run_load and the process's CPU seconds during the run, as one JSON line.
PYTHON_CLIENT = """
import asyncio, json, sys, time
from bench.http_load import run_load
port, paths_file, clients, seconds, seed, common = sys.argv[1:7]
paths = open(paths_file).read().split()
cpu = time.process_time()
result = asyncio.run(run_load(int(port), paths, clients=int(clients), seconds=float(seconds),
                              max_requests=10**9, seed=int(seed), grace=30.0, common=common))
result["cpu_seconds"] = time.process_time() - cpu
print(json.dumps(result))
"""


def busy_ticks() -> tuple[int, int]:
    """The machine's (busy, total) clock ticks over all cores so far, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def run_wrk(port: int, args: argparse.Namespace, encoding: str, scratch: Path) -> dict[str, Any]:
    """One wrk run; its figures and its own CPU seconds (utime + stime when it exits)."""
    command = ["wrk", "--latency", "-t", str(args.threads), "-c", str(args.connections),
               "-d", f"{args.seconds:g}s", "-s", str(scratch / "paths.lua")]  # fmt: skip
    command += ["-H", ACCEPT_GZIP] if encoding == "gzip" else []
    command += [f"http://{LOOPBACK}:{port}", "--", str(scratch / "paths.txt"), str(args.seed)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    with process.stdout:
        output = process.stdout.read()
    # The kernel's utime/stime of the process (what /proc/<pid>/stat shows while it runs),
    # read as it is reaped: /proc can no longer show them once it has exited.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}: {output}")
    figures = json.loads(output.strip().splitlines()[-1])
    seconds = figures["duration_us"] / 1e6
    return {
        "requests": figures["requests"],
        "requests_per_second": figures["requests"] / seconds,
        "p50_ms": figures["p50_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "max_ms": figures["max_us"] / 1000,
        "errors": sum(figures["errors"].values()),
        "error_kinds": figures["errors"],
        "generator_cpu_seconds": usage.ru_utime + usage.ru_stime,
        "wrk_output": output,
    }


def run_python(port: int, args: argparse.Namespace, encoding: str, scratch: Path) -> dict[str, Any]:
    """One run of bench/http_load.py in a process of its own; its figures and CPU seconds."""
    common = ACCEPT_GZIP if encoding == "gzip" else ""
    command = [sys.executable, "-c", PYTHON_CLIENT, str(port), str(scratch / "paths.txt"),
               str(args.connections), f"{args.seconds:g}", str(args.seed), common]  # fmt: skip
    environment = os.environ | {"PYTHONPATH": str(servers.REPO)}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["generator_cpu_seconds"] = result.pop("cpu_seconds")
    result["errors"] = result["errors"] + sum(
        count for status, count in result.pop("statuses").items() if status != "200"
    )
    return result


class MidRunCycles:
    """Commits a cycle of every stored pair when asked (`at(moment)`), from a thread of its own
    on one connection (as bench.hot_read's cycles), so a run's load is not held up by it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.asked: queue.Queue[float | None] = queue.Queue()
        self.done: list[Cycle] = []
        self.error: str | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def at(self, moment: float) -> None:
        """Commit one cycle at `moment` (time.monotonic())."""
        self.asked.put(moment)

    def run(self) -> None:
        try:
            asyncio.run(self.cycles())
        except Exception as error:  # reported in the result, the load goes on
            self.error = repr(error)

    async def cycles(self) -> None:
        rng, writer = random.Random(12), TickWriter()
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            markets = await cycle_markets(conn)
            while (moment := await asyncio.to_thread(self.asked.get)) is not None:
                await asyncio.sleep(max(0.0, moment - time.monotonic()))
                at = datetime.fromtimestamp(int(time.time()), UTC)
                self.done.append(await commit_cycle(conn, markets, rng, at, writer))


@contextmanager
def mid_run_cycles(url: str, enabled: bool) -> Iterator[MidRunCycles | None]:
    """A MidRunCycles running while the block runs, or None when not `enabled`."""
    if not enabled:
        yield None
        return
    cycles = MidRunCycles(url)
    cycles.thread.start()
    try:
        yield cycles
    finally:
        cycles.asked.put(None)
        cycles.thread.join(timeout=120)


def one_run(
    server: tuple[int, int],
    generator: str,
    encoding: str,
    args: argparse.Namespace,
    scratch: Path,
    cycles: MidRunCycles | None,
) -> dict[str, Any]:
    """Load one server with one generator; add the server's and the generator's CPU per
    request, the machine's busy share and, if a cycle was committed, its timing."""
    port, pid = server
    before_cycles = len(cycles.done) if cycles else 0
    server_cpu, (busy, total) = cpu_seconds(pid), busy_ticks()
    if cycles is not None:
        cycles.at(time.monotonic() + args.seconds / 2)
    runner = run_wrk if generator == "wrk" else run_python
    result = runner(port, args, encoding, scratch)
    busy_after, total_after = busy_ticks()
    requests = max(1, result["requests"])
    result["server_cpu_us_per_request"] = (cpu_seconds(pid) - server_cpu) / requests * 1e6
    result["generator_cpu_us_per_request"] = result["generator_cpu_seconds"] / requests * 1e6
    result["machine_busy_cores"] = (
        (busy_after - busy) / (total_after - total) * (os.cpu_count() or 1)
    )
    result["load_average"] = machine.load_average()
    if cycles is not None:
        deadline = time.monotonic() + 30
        while len(cycles.done) == before_cycles and time.monotonic() < deadline:
            time.sleep(0.1)
        result["cycles"] = [
            {"write_s": c.committed - c.started, "ranking_s": c.ranked - c.committed}
            for c in cycles.done[before_cycles:]
        ]
    return result


FIGURES = ("requests_per_second", "p50_ms", "p99_ms", "generator_cpu_us_per_request",
           "server_cpu_us_per_request", "machine_busy_cores")  # fmt: skip


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median and min-max of each figure over the rounds, and the errors in all."""
    figures: dict[str, Any] = {key: stats.summary([run[key] for run in runs]) for key in FIGURES}
    figures["errors"] = sum(int(run["errors"]) for run in runs)
    return figures


def compare(sides: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Both servers' summaries under one generator and encoding, and their ratios: requests/s,
    API / minimal app (median of each, and round by round), and the servers' CPU per request,
    minimal app / API (the throughput ratio two CPU-bound servers would show with the load
    generator's cost taken out)."""
    compared: dict[str, Any] = {side: summarise(runs) for side, runs in sides.items()}
    compared["ratio"] = (
        compared["api"]["requests_per_second"]["median"]
        / compared["minimal"]["requests_per_second"]["median"]
    )
    compared["ratio_rounds"] = [
        api["requests_per_second"] / minimal["requests_per_second"]
        for api, minimal in zip(sides["api"], sides["minimal"], strict=True)
    ]
    compared["server_cpu_ratio"] = (
        compared["minimal"]["server_cpu_us_per_request"]["median"]
        / compared["api"]["server_cpu_us_per_request"]["median"]
    )
    return compared


def table(result: dict[str, Any]) -> str:
    """The medians as a Markdown table, a row per encoding, generator and server."""
    lines = [
        "| clients | generator | server | req/s | p50 ms | p99 ms | generator CPU µs/req "
        "| server CPU µs/req | busy cores | API / minimal: req/s | server CPU |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, compared in result["compared"].items():
        encoding, generator = key.split("/")
        for side in ("api", "minimal"):
            figures = compared[side]
            median = {name: figures[name]["median"] for name in FIGURES}
            ratio = compared["ratio"]
            rounds = compared["ratio_rounds"]
            shown = (
                f"**{ratio:.2f}** ({min(rounds):.2f}\N{EN DASH}{max(rounds):.2f}) "
                f"| {compared['server_cpu_ratio']:.2f}"
                if side == "api"
                else " | "
            )
            lines.append(
                f"| {encoding} | {generator} | {side} | {median['requests_per_second']:,.0f} "
                f"| {median['p50_ms']:.2f} | {median['p99_ms']:.2f} "
                f"| {median['generator_cpu_us_per_request']:.1f} "
                f"| {median['server_cpu_us_per_request']:.1f} "
                f"| {median['machine_busy_cores']:.2f} | {shown} |"
            )
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.outside", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_tracker"))
    parser.add_argument("--pairs", type=int, default=10_000, help="random pairs requested")
    parser.add_argument("--seconds", type=float, default=10.0, help="each run")
    parser.add_argument("--rounds", type=int, default=3, help="each loading both servers")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="wrk's threads (-t)")
    parser.add_argument("--encodings", nargs="+", choices=ENCODINGS, default=list(ENCODINGS))
    parser.add_argument("--generators", nargs="+", choices=GENERATORS, default=list(GENERATORS))
    parser.add_argument(
        "--cycle-every-run",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="commit a cycle of every stored pair halfway through each run",
    )
    parser.add_argument(
        "--api-checkout",
        type=Path,
        default=servers.REPO,
        help="serve the API from this tree (e.g. `git archive <commit> | tar -x -C DIR`)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run what the options describe; print the table and return the figures."""
    args = parse(argv)
    if shutil.which("wrk") is None and "wrk" in args.generators:
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")
    url = args.database_url
    markets = sample_markets(url, args.pairs, args.seed)
    paths = [f"/prices/{exchange}/{symbol}" for exchange, symbol in markets]
    options = vars(args) | {"api_checkout": None}  # no machine path in saved results
    if args.api_checkout != servers.REPO:
        options["api_checkout"] = args.api_checkout.name
    result: dict[str, Any] = {"machine": machine.describe(url), "options": options}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        f"{encoding}/{generator}": {"api": [], "minimal": []}
        for encoding in args.encodings
        for generator in args.generators
    }
    with (
        tempfile.TemporaryDirectory() as directory,
        servers.tracker_api(as_role(url, "api"), args.api_checkout, API_WORKERS="1") as api,
        mid_run_cycles(url, args.cycle_every_run) as cycles,
    ):
        scratch = Path(directory)
        (scratch / "paths.txt").write_text("\n".join(paths) + "\n")
        (scratch / "paths.lua").write_text(WRK_SCRIPT)
        result["warm"] = warm(api[0], paths, args.connections)
        result["health_after_warm"] = health(api[0])
        print("warm", round(result["warm"]["seconds"], 1), "s", flush=True)
        with minimal_apps(api[0], paths[0], args.encodings, scratch, result) as minimal:
            for round_ in range(args.rounds):
                for key, sides in runs.items():
                    encoding, generator = key.split("/")
                    order = ("api", "minimal") if round_ % 2 == 0 else ("minimal", "api")
                    for side in order:
                        server = api if side == "api" else minimal[encoding]
                        figures = one_run(server, generator, encoding, args, scratch, cycles)
                        sides[side].append(figures)
                        print(round_, key, side, {k: round(figures[k], 2) for k in FIGURES},
                              flush=True)  # fmt: skip
        result["health_after_runs"] = health(api[0])
        result["cycles_error"] = cycles.error if cycles else None
    result["runs"] = runs
    result["compared"] = {key: compare(sides) for key, sides in runs.items()}
    result["load_after"] = machine.load_average()
    print(table(result))
    stats.save(result, args.output)
    return result


@contextmanager
def minimal_apps(
    api_port: int, path: str, encodings: Sequence[str], scratch: Path, result: dict[str, Any]
) -> Iterator[dict[str, tuple[int, int]]]:
    """A minimal app per encoding, each sending the API's answer to `path` in it: yields
    {encoding: (port, pid)}."""
    started: dict[str, tuple[int, int]] = {}
    with ExitStack() as stack:
        for encoding in encodings:
            status, _, body = get(api_port, path, gzip=encoding == "gzip")
            (scratch / f"{encoding}.body").write_bytes(body)
            result[f"body_bytes_{encoding}"], result[f"body_status_{encoding}"] = len(body), status
            port = servers.free_port()
            command = ["-m", "bench.minimal_app", "--port", str(port),
                       "--body-file", str(scratch / f"{encoding}.body")]  # fmt: skip
            command += ["--gzip"] if encoding == "gzip" else []
            pid = stack.enter_context(servers.serving(command, port, {}))
            started[encoding] = (port, pid)
        yield started


if __name__ == "__main__":
    main()
