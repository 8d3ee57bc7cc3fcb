"""Applies db/init.sql, the one place the schema is declared."""

from pathlib import Path

import psycopg

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "db" / "init.sql"


def apply_schema(conninfo: str) -> None:
    """Run db/init.sql against the database; safe to repeat (the script is idempotent)."""
    sql = SCHEMA_FILE.read_text()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql)  # a trusted file, never user input
