"""Markdown tables of saved results (`--output` JSON files), for RESULTS.md.

`python -m bench.report write bench/results/write.json`, `... read FILE [FILE …]`,
`... footprint FILE`.
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def spread(figure: dict[str, float], digits: int = 1) -> str:
    """`median (min-max)` of a summarised figure."""
    return f"{figure['median']:.{digits}f} ({figure['min']:.{digits}f}-{figure['max']:.{digits}f})"


def original_cells(size: dict[str, Any], way: str) -> str:
    """One original way's ticks/s, extrapolated seconds and ratio; dashes when not measured."""
    if f"original_{way}_ratio" not in size:
        return "- | - | -"
    return (
        f"{spread(size[f'original_{way}_ticks_per_second'], 0)} "
        f"| {size[f'original_{way}_seconds_extrapolated']:,.1f} "
        f"| {size[f'original_{way}_ratio']:,.0f}x"
    )


def write_table(result: dict[str, Any]) -> list[str]:
    """One row per cycle size: the tracker's seconds and rate, then the ORM and raw originals'."""
    lines = [
        "| ticks per cycle | TickWriter.write s, median (min-max) | ticks/s | first cycle s "
        "(registers markets) | candle roll-up s | ORM per-row ticks/s, median (min-max) | "
        "ORM s (extrapolated) | ratio vs ORM | raw per-row ticks/s, median (min-max) | "
        "raw s (extrapolated) | ratio vs raw |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in result["sizes"]:
        roll_up = size["roll_up_seconds"]
        if "ratio" in size:  # saved before the ORM way existed: the raw way alone, unprefixed
            size = {
                **size,
                "original_raw_ticks_per_second": size["original_ticks_per_second"],
                "original_raw_seconds_extrapolated": size["original_seconds_extrapolated"],
                "original_raw_ratio": size["ratio"],
            }
        lines.append(
            f"| {size['ticks']:,} | {spread(size['tracker_seconds'], 4)} "
            f"| {size['tracker_ticks_per_second']:,.0f} "
            f"| {size['tracker_first_cycle_seconds']:.3f} "
            f"| {spread(roll_up, 3) if roll_up['runs'] else '-'} "
            f"| {original_cells(size, 'orm')} | {original_cells(size, 'raw')} |"
        )
    return lines


def read_table(results: Sequence[dict[str, Any]]) -> list[str]:
    """One row per run label, target and client count: rate, p50, p99 (median and min-max)."""
    lines = [
        "| data / API | endpoint | clients | requests/s | p50 ms | p99 ms | requests | statuses |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        for key, figures in result["http"].items():
            target, clients = key.split("@")
            statuses: dict[str, int] = {}
            for run in result["raw_runs"][key]:
                for status, count in run["statuses"].items():
                    statuses[status] = statuses.get(status, 0) + count
            lines.append(
                f"| {result['label']} | {target} | {clients} "
                f"| {spread(figures['requests_per_second'])} | {spread(figures['p50_ms'])} "
                f"| {spread(figures['p99_ms'])} | {figures['requests']} "
                f"| {', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))} |"
            )
    return lines


def query_table(results: Sequence[dict[str, Any]]) -> list[str]:
    """Each named query alone: median (min-max) milliseconds per run label."""
    lines = ["| data | query | ms, median (min-max) | runs |", "|---|---|---:|---:|"]
    for result in results:
        for name, timing in result["queries_ms"].items():
            lines.append(
                f"| {result['label']} | `{name}` | {spread(timing, 2)} | {timing['runs']} |"
            )
    return lines


def footprint_table(result: dict[str, Any]) -> list[str]:
    """Bytes per tick at each scale, then resident memory of each process."""
    lines = [
        "| pairs | hours | rows | hypertable bytes | bytes per tick |",
        "|---:|---:|---:|---:|---:|",
    ]
    for scale in result["disk"]:
        lines.append(
            f"| {scale['pairs']:,} | {scale['hours']:g} | {scale['rows']:,} | {scale['bytes']:,} "
            f"| {scale['bytes_per_tick']:.1f} |"
        )
    lines += ["", "| process | RSS MiB |", "|---|---:|"]
    for name, value in result["memory"].items():
        shown = f"{value / 2**20:.1f}" if name.endswith("bytes") else f"{value:,}"
        lines.append(f"| {name} | {shown} |")
    if result.get("original"):
        original = result["original"]
        lines.append(
            f"\noriginal_prices: {original['rows']:,} rows, {original['bytes']:,} bytes, "
            f"{original['bytes_per_row']:.1f} bytes per row"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """Print the tables of the kind and files named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("kind", choices=["write", "read", "footprint"])
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    results = [json.loads(path.read_text()) for path in args.files]
    if args.kind == "write":
        lines = write_table(results[0])
    elif args.kind == "read":
        lines = [*read_table(results), "", *query_table(results)]
    else:
        lines = footprint_table(results[0])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
