"""The schema on a real TimescaleDB: migrations (idempotent, upgrading a database in use, one at
a time), the hypertable, and the group roles' grants."""

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from datatracker.schema import migrate, migrations
from tests.conftest import as_role, bootstrap, execute, with_dbname

# Inside the raw retention, where a service may write (migration 0006).
TICK_TIME = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)

# Every row a user's data could have: markets, the run records and the ticks.
CONTENTS = """
    SELECT (SELECT count(*) FROM markets), (SELECT count(*) FROM collector_runs),
           (SELECT count(*) FROM ticks)"""

CATALOG_QUERIES = {
    "tables": "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "hypertables": "SELECT * FROM timescaledb_information.hypertables",
    "dimensions": "SELECT * FROM timescaledb_information.dimensions",
    "roles": "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'tracker\\_%'",
    "versions": "SELECT version, name FROM schema_migrations",
    "grants": """
        SELECT relname, relacl::text FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relacl IS NOT NULL
        UNION ALL SELECT nspname, nspacl::text FROM pg_namespace WHERE nspname = 'public'""",
}


async def catalog_snapshot(conn: psycopg.AsyncConnection) -> dict[str, list[tuple[object, ...]]]:
    """Return the schema's objects, each kind as a sorted list of rows."""
    snapshot = {}
    for kind, query in CATALOG_QUERIES.items():
        cursor = await conn.execute(query)
        snapshot[kind] = sorted(await cursor.fetchall(), key=repr)
    return snapshot


async def insert_market(conn: psycopg.AsyncConnection) -> int:
    """Insert the kraken btcusd market and return its id."""
    cursor = await conn.execute(
        "INSERT INTO markets (exchange, symbol, base, quote, first_seen, last_seen)"
        " VALUES ('kraken', 'btcusd', 'BTC', 'USD', %s, %s) RETURNING id",
        [TICK_TIME, TICK_TIME],
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def insert_tick(conn: psycopg.AsyncConnection, market_id: int) -> None:
    """Insert one tick at TICK_TIME, doing nothing if the market already has one then."""
    await conn.execute(
        "INSERT INTO ticks (time, market_id, price) VALUES (%s, %s, 97000.5)"
        " ON CONFLICT DO NOTHING",
        [TICK_TIME, market_id],
    )


@contextlib.asynccontextmanager
async def member_of(
    conn: psycopg.AsyncConnection, database_url: str, group: str
) -> AsyncIterator[psycopg.AsyncConnection]:
    """Connect as a new login role in `group`, dropped afterwards since roles are cluster-wide."""
    role, password = f"test_{group}_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}")
    await conn.execute(create.format(sql.Identifier(role), password, sql.Identifier(group)))
    try:
        member_url = make_conninfo(database_url, user=role, password=password)
        async with await psycopg.AsyncConnection.connect(member_url, autocommit=True) as member:
            yield member
    finally:
        await conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def empty_database_url(database_server: str) -> Iterator[str]:
    """A new database prepared as the Docker image's first start prepares it (db/init.sql and
    db/create-users.sh), without the schema: what `migrate` meets on a first deployment."""
    name = f"datatracker_empty_{secrets.token_hex(4)}"
    execute(database_server, "CREATE DATABASE {}", name)
    url = with_dbname(database_server, name)
    bootstrap(url)
    yield url
    execute(database_server, "DROP DATABASE {} WITH (FORCE)", name)


async def test_migrating_again_changes_nothing(
    conn: psycopg.AsyncConnection, database_url: str
) -> None:
    """A second migrate leaves tables, indexes, hypertables, grants and versions unchanged."""
    expected = await catalog_snapshot(conn)

    applied = await asyncio.to_thread(migrate, database_url)

    assert ([], expected) == (applied, await catalog_snapshot(conn))


async def test_a_database_of_the_previous_version_is_upgraded_without_losing_data(
    empty_database_url: str,
) -> None:
    """A database built by the previous release's db/init.sql (migration 0001, no version
    table) and holding data is brought to the current version; every row stays and the
    collector writes on."""
    url = empty_database_url
    previous = migrations()[0]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(previous.sql.encode())  # as the image's first start ran it
        market_id = await insert_market(conn)
        await insert_tick(conn, market_id)
        await conn.execute(
            "INSERT INTO collector_runs VALUES (%s, 'kraken', true, 1, 1, 0, 0.1, NULL)",
            [TICK_TIME],
        )
        before = await (await conn.execute(CONTENTS)).fetchall()

    applied = await asyncio.to_thread(migrate, url)

    async with await psycopg.AsyncConnection.connect(as_role(url, "collector")) as collector:
        await collector.execute(
            "INSERT INTO ticks (time, market_id, price) VALUES (%s, %s, 1.5)",
            [TICK_TIME + timedelta(hours=1), market_id],
        )
        await collector.commit()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        after = await (await conn.execute(CONTENTS)).fetchall()
        versions = await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()
    assert [f"{m.version:04d}_{m.name}" for m in migrations()[1:]] == applied
    assert [(m.version,) for m in migrations()] == sorted(versions)
    assert [(1, 1, 1)] == before
    assert [(1, 1, 2)] == after


async def test_two_migrations_at_once_apply_each_step_once(empty_database_url: str) -> None:
    """Two `migrate` runs started together take turns: one applies every step, the other none."""
    first, second = await asyncio.gather(
        asyncio.to_thread(migrate, empty_database_url),
        asyncio.to_thread(migrate, empty_database_url),
    )

    assert [len(migrations()), 0] == sorted([len(first), len(second)], reverse=True)


async def test_ticks_is_a_hypertable_partitioned_on_time(conn: psycopg.AsyncConnection) -> None:
    """`ticks` is a hypertable with one dimension, the `time` column."""
    cursor = await conn.execute(
        "SELECT column_name, dimension_type FROM timescaledb_information.dimensions"
        " WHERE hypertable_schema = 'public' AND hypertable_name = 'ticks'"
    )

    assert [("time", "Time")] == await cursor.fetchall()


async def test_writing_the_same_tick_twice_keeps_one_row(conn: psycopg.AsyncConnection) -> None:
    """Inserting an existing tick with ON CONFLICT DO NOTHING adds no row."""
    market_id = await insert_market(conn)

    await insert_tick(conn, market_id)
    await insert_tick(conn, market_id)

    cursor = await conn.execute("SELECT count(*) FROM ticks")
    assert (1,) == await cursor.fetchone()


async def test_a_reader_can_select_prices_but_not_insert_ticks(
    conn: psycopg.AsyncConnection, database_url: str
) -> None:
    """A login role in tracker_reader reads `prices` and is refused an insert into `ticks`."""
    market_id = await insert_market(conn)
    await insert_tick(conn, market_id)

    async with member_of(conn, database_url, "tracker_reader") as reader:
        cursor = await reader.execute("SELECT exchange, symbol, price FROM prices")
        assert [("kraken", "btcusd", 97000.5)] == await cursor.fetchall()

        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await insert_tick(reader, market_id)


async def test_a_writer_can_insert_markets_and_ticks(
    conn: psycopg.AsyncConnection, database_url: str
) -> None:
    """A login role in tracker_writer adds a market and a tick."""
    async with member_of(conn, database_url, "tracker_writer") as writer:
        market_id = await insert_market(writer)
        await insert_tick(writer, market_id)

    cursor = await conn.execute("SELECT exchange, symbol, price FROM prices")
    assert [("kraken", "btcusd", 97000.5)] == await cursor.fetchall()
