"""Cost of migration 0006's guards on a cycle's write: the same kind of cycles written through
the collector's `TickWriter.write`, with the guards on ticks (the `ticks_in_bounds` trigger,
the `ticks_price_range` and `ticks_exchange_time_range` constraints) and without them,
alternately (on, off, off, on, …) in one database, so that the machine's load weighs on both
alike. Seconds per cycle for each (median, min-max) and their ratio, in wall-clock time and in
the CPU time of the database backend that wrote it (read from /proc when the server runs on
this machine: far less disturbed by other load than the wall clock)."""

import argparse
import asyncio
import os
import time
from pathlib import Path

import psycopg

from bench import databases, machine, stats
from bench.write_path import cycle_ticks, reset
from collector.writer import TickWriter

QUERIES = databases.QUERIES


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used, or NaN when it is not local."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def time_guards(url: str, count: int, rounds: int) -> dict[str, list[float]]:
    """Wall and backend CPU seconds of each cycle written with the guards on and off, `rounds`
    of each."""
    seconds: dict[str, list[float]] = {"on": [], "off": [], "on_cpu": [], "off_cpu": []}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        pid = int(row[0]) if row else 0
        writer = TickWriter()
        await writer.write(conn, cycle_ticks(count, 0))  # registers the markets, untimed
        cycle = 1
        for round_ in range(rounds):
            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            for guards in order:
                await conn.execute(QUERIES[f"guards_{guards}"])
                ticks = cycle_ticks(count, cycle)
                cycle += 1
                cpu, started = backend_cpu(pid), time.perf_counter()
                await writer.write(conn, ticks)
                seconds[guards].append(time.perf_counter() - started)
                seconds[f"{guards}_cpu"].append(backend_cpu(pid) - cpu)
        await conn.execute(QUERIES["guards_on"])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=databases.database_url("bench_bounds"))
    parser.add_argument("--ticks", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--rounds", type=int, default=10, help="cycles with and without each")
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    args = parser.parse_args()

    url = databases.prepare(args.database_url)
    reset(url)
    before = machine.describe(url)
    sizes = []
    for count in args.ticks:
        seconds = asyncio.run(time_guards(url, count, args.rounds))
        on, off = stats.summary(seconds["on"]), stats.summary(seconds["off"])
        cpu_on, cpu_off = sum(seconds["on_cpu"]), sum(seconds["off_cpu"])
        sizes.append(
            {
                "ticks": count,
                "guards_on": on,
                "guards_off": off,
                "ratio": on["median"] / off["median"],
                "backend_cpu_on_seconds": cpu_on,
                "backend_cpu_off_seconds": cpu_off,
                "backend_cpu_ratio": cpu_on / cpu_off if cpu_off else None,
            }
        )
        print(
            f"{count:>7,} ticks: guards on {on['median']:.4f} s ({on['min']:.4f}-{on['max']:.4f}),"
            f" off {off['median']:.4f} s ({off['min']:.4f}-{off['max']:.4f}),"
            f" on/off {on['median'] / off['median']:.2f};"
            f" backend CPU on {cpu_on:.2f} s, off {cpu_off:.2f} s over {args.rounds} cycles each"
        )
    stats.save(
        {"machine": before, "load_after": machine.load_average(), "sizes": sizes}, args.output
    )


if __name__ == "__main__":
    main()
