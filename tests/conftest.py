"""Database fixtures: each test gets a fresh database cloned from a template holding the schema."""

import contextlib
import functools
import gc
import os
import secrets
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import LiteralString

import docker
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from datatracker.schema import apply_schema

TIMESCALEDB_IMAGE = "timescale/timescaledb:2.19.3-pg17"
LOCAL_DB_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "local-db.sh"
SERVER_SOURCE = pytest.StashKey[str]()


def with_dbname(conninfo: str, dbname: str) -> str:
    """Return `conninfo` (URL or key=value) pointing at database `dbname`."""
    return make_conninfo(conninfo, dbname=dbname)


def execute(conninfo: str, query: LiteralString, *names: str) -> None:
    """Run one statement in autocommit mode, quoting `names` into its `{}` placeholders."""
    statement = sql.SQL(query).format(*map(sql.Identifier, names))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(statement)


def docker_answers() -> bool:
    """Tell whether a Docker engine answers, without waiting long."""
    # docker-py leaves its socket open when no engine listens; collect it here, quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            with contextlib.closing(docker.from_env(timeout=3)) as client:
                return bool(client.ping())
        except (docker.errors.DockerException, OSError):
            return False
        finally:
            gc.collect()


@functools.cache
def server_source() -> str:
    """Name the server the tests use: TEST_DATABASE_URL, testcontainers or the local cluster."""
    if os.environ.get("TEST_DATABASE_URL"):
        return "TEST_DATABASE_URL"
    if docker_answers():
        return f"testcontainers ({TIMESCALEDB_IMAGE})"
    return "local cluster (scripts/local-db.sh)"


def pytest_report_header() -> str:
    """Show which database server the tests use."""
    return f"database server: {server_source()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat the server used after the run, as the header is hidden under -q."""
    if source := terminalreporter.config.stash.get(SERVER_SOURCE, None):
        terminalreporter.write_line(f"database server: {source}")


@pytest.fixture(scope="session")
def database_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """Yield an admin URL of a TimescaleDB server on which the tests may create databases."""
    source = pytestconfig.stash[SERVER_SOURCE] = server_source()
    if source == "TEST_DATABASE_URL":
        yield os.environ["TEST_DATABASE_URL"]
    elif source.startswith("testcontainers"):
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # older testcontainers releases
            from testcontainers.postgres import PostgresContainer

        with PostgresContainer(TIMESCALEDB_IMAGE, driver=None) as container:
            yield container.get_connection_url()
    else:
        started = subprocess.run(
            [LOCAL_DB_SCRIPT, "start"], check=True, stdout=subprocess.PIPE, text=True
        )
        yield started.stdout.splitlines()[-1]


@pytest.fixture(scope="session")
def template_database(database_server: str) -> Iterator[str]:
    """Yield the name of a template database holding the schema, dropped after the session."""
    name = f"datatracker_template_{secrets.token_hex(4)}"
    execute(database_server, "CREATE DATABASE {}", name)
    apply_schema(with_dbname(database_server, name))
    # No connections, not even TimescaleDB's scheduler: CREATE DATABASE ... TEMPLATE
    # fails while anyone is connected to the template.
    execute(database_server, "ALTER DATABASE {} IS_TEMPLATE true ALLOW_CONNECTIONS false", name)
    with psycopg.connect(database_server, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
    yield name
    execute(database_server, "ALTER DATABASE {} IS_TEMPLATE false", name)
    execute(database_server, "DROP DATABASE {} WITH (FORCE)", name)


@pytest.fixture
def database_url(database_server: str, template_database: str) -> Iterator[str]:
    """Yield the conninfo of a fresh database cloned from the template, dropped afterwards."""
    name = f"datatracker_test_{secrets.token_hex(4)}"
    execute(database_server, "CREATE DATABASE {} TEMPLATE {}", name, template_database)
    yield with_dbname(database_server, name)
    execute(database_server, "DROP DATABASE {} WITH (FORCE)", name)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """Yield an autocommit connection to the test's database."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        yield connection
