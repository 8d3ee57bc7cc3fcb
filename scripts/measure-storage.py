"""Bytes per tick on disk, raw and (where the edition has it) compressed.

    python scripts/measure-storage.py DATABASE_URL [--pairs 50] [--days 2]

Writes `--days` of minute ticks for `--pairs` pairs into a scratch hypertable shaped like
`ticks` (same columns, keys, chunking and compression settings), measures it, compresses
every chunk when the TimescaleDB edition allows, measures again, and drops the table.
Prices are a seeded random walk per pair, generated in the database an hour at a time.
Prints a Markdown table.
"""

import argparse
import sys
from pathlib import Path

import psycopg

from datatracker.queries import load_queries

QUERIES = load_queries(Path(__file__).with_name("measure-storage.sql"))


def bytes_per_tick(conn: psycopg.Connection, query: str, ticks: int) -> tuple[float, float]:
    """(all, table) bytes of the probe divided by its ticks."""
    all_bytes, table_bytes = conn.execute(QUERIES[query]).fetchone() or (0, 0)
    return all_bytes / ticks, table_bytes / ticks


def measure(conn: psycopg.Connection, pairs: int, days: int) -> dict[str, tuple[float, float]]:
    """Bytes per tick of the probe raw and, on the licensed edition, compressed."""
    for hours in range(days * 24, 0, -1):
        start = conn.execute(QUERIES["hour_start"], {"hours": hours}).fetchone()
        conn.execute(QUERIES["insert_hour"], {"start": start and start[0], "pairs": pairs})
    ticks = pairs * days * 24 * 60
    sizes = {"raw (heap + indexes)": bytes_per_tick(conn, "raw_size", ticks)}
    license_row = conn.execute(QUERIES["license"]).fetchone()
    if license_row and license_row[0] == "timescale":
        conn.execute(QUERIES["compress_probe"])
        sizes["compressed"] = bytes_per_tick(conn, "compressed_size", ticks)
    return sizes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database_url")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--days", type=int, default=2)
    args = parser.parse_args(argv)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.42)")
        conn.execute(QUERIES["create_probe"])
        try:
            sizes = measure(conn, args.pairs, args.days)
        finally:
            conn.execute(QUERIES["drop_probe"])
    print(f"{args.pairs} pairs x {args.days} days of minute ticks\n")
    print("| storage | bytes per tick (all) | bytes per tick (table) |\n|---|---:|---:|")
    for state, (all_bytes, table_bytes) in sizes.items():
        print(f"| {state} | {all_bytes:.1f} | {table_bytes:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
