"""Versions of the schema: numbered migrations, applied once each, in order, under a lock.

The migrations are the SQL files of the package `datatracker.migrations`, named
`NNNN_what_it_does.sql`; each runs in its own transaction and is recorded in
`schema_migrations`. A database that db/init.sql built before migrations existed holds
migration 0001 already and is recorded as such. After the migrations, the storage settings
(RAW_RETENTION, COMPRESS_AFTER, CANDLES_*_RETENTION) are written to the database, which
applies them (`configure_storage()`, migration 0002).
"""

import re
from dataclasses import dataclass
from datetime import timedelta
from importlib.resources import files

import psycopg

from datatracker.settings import Settings

# pg_advisory_lock's key: two `migrate` runs at once take turns instead of colliding.
MIGRATION_LOCK = 0x64_74_72_6B  # "dtrk"
_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")

CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


STORAGE_KEYS = ("raw_retention", "compress_after", "candles_5m_retention", "candles_1h_retention")
# Unset values keep what the database holds (or its defaults).
CONFIGURE_STORAGE = """
SELECT configure_storage(
    %(raw_retention)s::interval, %(compress_after)s::interval,
    %(candles_5m_retention)s::interval, %(candles_1h_retention)s::interval
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered step of the schema."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with the package, oldest first."""
    found = []
    for entry in files("datatracker.migrations").iterdir():
        if match := _FILE_NAME.match(entry.name):
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda migration: migration.version)


def as_interval(value: timedelta) -> str:
    """A timedelta as PostgreSQL interval text: whole days as `N days`, else seconds."""
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86_400)
    return f"{days} days" if not rest else f"{seconds} seconds"


def storage_settings(settings: Settings | None) -> dict[str, str]:
    """The lifecycle settings as interval text, keyed as configure_storage() names them."""
    if settings is None:
        return {}
    return {
        "raw_retention": as_interval(settings.raw_retention),
        "compress_after": as_interval(settings.compress_after),
        "candles_5m_retention": as_interval(settings.candles_5m_retention),
        "candles_1h_retention": as_interval(settings.candles_1h_retention),
    }


def migrate(
    conninfo: str, settings: Settings | None = None, *, upto: int | None = None
) -> list[str]:
    """Apply the migrations the database lacks (up to version `upto`), then its storage
    settings (`settings`, or the stored ones, or the defaults); return the names applied.

    Run it as the role that owns the database: migrations create and alter its objects.
    """
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
        try:
            conn.execute(CREATE_VERSION_TABLE)
            done = recorded_versions(conn)
            for migration in migrations():
                if migration.version in done or (upto is not None and migration.version > upto):
                    continue
                with conn.transaction():
                    apply(conn, migration, settings)
                applied.append(f"{migration.version:04d}_{migration.name}")
            if configurable(conn):
                configure(conn, settings)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])
    return applied


def recorded_versions(conn: psycopg.Connection) -> set[int]:
    """The versions applied so far; a schema built by the old db/init.sql counts as 0001."""
    versions = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    if not versions and has_table(conn, "ticks"):
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (1, 'initial (found in place)')"
        )
        versions = {1}
    return versions


def has_table(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"public.{name}"]).fetchone()
    return bool(row and row[0])


def apply(conn: psycopg.Connection, migration: Migration, settings: Settings | None) -> None:
    """Run one migration and record it, inside the caller's transaction."""
    # Migration 0001 reads the lifecycle settings from custom settings (`datatracker.*`).
    for name, value in storage_settings(settings).items():
        conn.execute("SELECT set_config(%s, %s, true)", [f"datatracker.{name}", value])
    conn.execute(migration.sql.encode())  # a trusted file shipped with the package
    conn.execute(
        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
        [migration.version, migration.name],
    )


def configurable(conn: psycopg.Connection) -> bool:
    """Whether the schema has configure_storage() (migration 0002 on)."""
    row = conn.execute(
        "SELECT to_regprocedure('configure_storage(interval, interval, interval, interval)')"
        " IS NOT NULL"
    )
    found = row.fetchone()
    return bool(found and found[0])


def configure(conn: psycopg.Connection, settings: Settings | None) -> None:
    """Store the lifecycle settings and bring the policies in line with them."""
    values = storage_settings(settings)
    with conn.transaction():
        conn.execute(CONFIGURE_STORAGE, {key: values.get(key) for key in STORAGE_KEYS})
