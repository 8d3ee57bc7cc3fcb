"""The storage mode: TimescaleDB's own policies, or the collector's Apache-2 fallback."""

from pathlib import Path
from typing import Literal

from psycopg import AsyncConnection

from datatracker.queries import load_queries

QUERIES = load_queries(Path(__file__).with_name("storage.sql"))

# `timescale`: continuous aggregates, compression and policies run in the database.
# `apache`: plain candle tables rolled up and chunks dropped by the collector; no compression.
StorageMode = Literal["timescale", "apache"]


async def detect_storage_mode(conn: AsyncConnection) -> StorageMode:
    """`timescale` when the edition has the Timescale License features, else `apache`."""
    cursor = await conn.execute(QUERIES["timescaledb_license"])
    row = await cursor.fetchone()
    return mode_of_license(row[0] if row else None)


def mode_of_license(license: str | None) -> StorageMode:
    """The storage mode of a `timescaledb.license` setting (None: no TimescaleDB setting)."""
    return "timescale" if license == "timescale" else "apache"
