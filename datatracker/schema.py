"""Applies db/init.sql, the one place the schema is declared."""

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import psycopg

from datatracker.settings import Settings

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "db" / "init.sql"


def as_interval(value: timedelta) -> str:
    """A timedelta as PostgreSQL interval text: whole days as `N days`, else seconds."""
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86_400)
    return f"{days} days" if not rest else f"{seconds} seconds"


def schema_settings(settings: Settings) -> dict[str, str]:
    """The custom settings db/init.sql reads (`datatracker.*`), from the lifecycle settings."""
    return {
        "datatracker.raw_retention": as_interval(settings.raw_retention),
        "datatracker.compress_after": as_interval(settings.compress_after),
        "datatracker.candles_5m_retention": as_interval(settings.candles_5m_retention),
        "datatracker.candles_1h_retention": as_interval(settings.candles_1h_retention),
    }


def apply_schema(conninfo: str, options: Mapping[str, str] | None = None) -> None:
    """Run db/init.sql against the database; safe to repeat (the script is idempotent).

    `options` sets custom settings (`datatracker.raw_retention`, …) for this run only;
    without them the script uses its documented defaults.
    """
    sql = SCHEMA_FILE.read_text()
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        for name, value in (options or {}).items():
            conn.execute("SELECT set_config(%s, %s, true)", [name, value])  # this transaction only
        conn.execute(sql)  # a trusted file, never user input
