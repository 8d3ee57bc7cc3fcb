"""The first seconds as wrk sees them (issue 18's "Done when"): right after the API answers
`/health`, and right after TimescaleDB compresses the oldest chunk of `ticks`.

Starts the real API (`python -m api`, API_WORKERS=1, as the role `api`) on `--database-url`
and, as soon as `/health` answers, runs `wrk` for `--seconds` at `--connections` connections
on random stored pairs (gzip clients; the Lua script of bench.outside), while `/health` is
read to time when every window is held. Then `--timeline` one-second wrk runs, each with a
seed of its own, show how the same start goes second by second (on a restarted API). With
`--compress`, once the API holds every window and has answered each pair once, the oldest
uncompressed chunk of `ticks` is compressed as the database's owner (what the compression
policy does each day; Timescale-License edition only) and wrk runs `--seconds` again; the
chunk is decompressed afterwards, so the data stay as generated. `wrk` must be on PATH.
Generate the data first: `python -m bench.generate --pairs 10000 --days 1`.
"""

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench import databases, machine, servers
from bench.http_load import warm
from bench.outside import WRK_SCRIPT, run_wrk
from bench.warm_up import stored_pairs, until_health, watch_windows
from tests.conftest import as_role

OLDEST_UNCOMPRESSED = """
SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks
WHERE hypertable_name = 'ticks' AND NOT is_compressed ORDER BY range_start LIMIT 1
"""


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """What a wrk run says, without its raw output."""
    return {key: value for key, value in result.items() if key != "wrk_output"}


def after_start(url: str, paths: list[str], args: argparse.Namespace, scratch: Path) -> Any:
    """wrk for `--seconds` from the moment /health answers, with the windows watched."""
    with servers.tracker_api(as_role(url, "api"), args.api_checkout, API_WORKERS="1") as api:
        port = api[0]
        until_health(port)
        began, stop, windows = time.monotonic(), threading.Event(), {}
        watcher = threading.Thread(
            target=lambda: windows.update(watch_windows(port, len(paths), began, stop)),
            daemon=True,
        )
        watcher.start()
        run = figures(run_wrk(port, args, "gzip", scratch))
        stop.set()
        watcher.join(timeout=30)
        result = {"wrk": run, "all_held_after_seconds": windows.get("all_held_after_seconds")}
        if args.compress:
            result["compression"] = after_compression(url, port, paths, args, scratch)
    return result


def timeline(url: str, paths: list[str], args: argparse.Namespace, scratch: Path) -> Any:
    """One-second wrk runs from the moment /health answers, each on pairs of its own seed."""
    seconds = []
    with servers.tracker_api(as_role(url, "api"), args.api_checkout, API_WORKERS="1") as api:
        until_health(api[0])
        began = time.monotonic()
        for second in range(args.timeline):
            one = argparse.Namespace(**{**vars(args), "seconds": 1.0, "seed": 1_000 + second})
            run = figures(run_wrk(api[0], one, "gzip", scratch))
            run["at_seconds"] = round(time.monotonic() - began, 1)
            seconds.append(run)
            print(f"  {run['at_seconds']:5.1f} s: {run['requests_per_second']:7.0f} req/s, "
                  f"p50 {run['p50_ms']:6.2f} ms, p99 {run['p99_ms']:6.2f} ms")  # fmt: skip
    return seconds


def after_compression(
    url: str, port: int, paths: list[str], args: argparse.Namespace, scratch: Path
) -> dict[str, Any]:
    """Every pair asked once, the oldest uncompressed chunk compressed, then wrk at once."""
    warm(port, paths, args.connections)
    with psycopg.connect(url, autocommit=True) as owner:
        row = owner.execute(OLDEST_UNCOMPRESSED).fetchone()
        if row is None:
            raise RuntimeError("no uncompressed chunk of ticks")
        chunk = row[0]
        started = time.monotonic()
        owner.execute("SELECT compress_chunk(%s::regclass)", (chunk,))
        compressed = time.monotonic() - started
        try:
            run = figures(run_wrk(port, args, "gzip", scratch))
        finally:
            owner.execute("SELECT decompress_chunk(%s::regclass)", (chunk,))
    return {"chunk": chunk, "compress_seconds": round(compressed, 1), "wrk": run}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.first_seconds", description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_tracker"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="wrk's threads (-t)")
    parser.add_argument("--timeline", type=int, default=20, help="one-second runs (0: none)")
    parser.add_argument("--compress", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--api-checkout", type=Path, default=servers.REPO)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    url = args.database_url
    paths = stored_pairs(url)
    results: dict[str, Any] = {"machine": machine.describe(url), "pairs": len(paths)}
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        (scratch / "paths.txt").write_text("\n".join(paths) + "\n")
        (scratch / "paths.lua").write_text(WRK_SCRIPT)
        results["start"] = after_start(url, paths, args, scratch)
        print(json.dumps(results["start"], indent=1))
        if args.timeline:
            results["timeline"] = timeline(url, paths, args, scratch)
    results["load_average"] = machine.load_average()
    if args.output:
        args.output.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
