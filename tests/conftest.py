"""Database fixtures: each test gets a fresh database cloned from a template holding the schema.

The template is built the way the deployment builds a database: db/init.sql and
db/create-users.sh run as a superuser (as at the Docker image's first start), then
`migrate` as the database's owner (compose's `migrate` service). The services under test then
log in as their own roles: `collector_url`, `api_url` and `grafana_url`. A superuser only
sets up (`database_url`).
"""

import contextlib
import functools
import gc
import os
import secrets
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import LiteralString

import docker
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from datatracker.schema import migrate
from datatracker.storage import StorageMode

ROOT = Path(__file__).resolve().parent.parent
TIMESCALEDB_IMAGE = "timescale/timescaledb:2.28.3-pg18"
LOCAL_DB_SCRIPT = ROOT / "scripts" / "local-db.sh"
# The service roles' passwords on test servers (db/create-users.sh creates the roles).
ROLE_PASSWORDS = {"collector": "collector", "api": "api", "grafana": "grafana"}


@dataclass(frozen=True)
class Server:
    """The TimescaleDB server of this run: an admin URL and what it is."""

    url: str
    source: str
    version: str
    postgresql: str  # the server's PostgreSQL version, e.g. '17.6'
    edition: StorageMode  # 'timescale' (Timescale License) or 'apache'

    def describe(self) -> str:
        licence = "Timescale License" if self.edition == "timescale" else "Apache-2"
        address = conninfo_to_dict(self.url)
        where = f"{address.get('host', 'localhost')}:{address.get('port', 5432)}"
        return (
            f"{self.source} at {where}: PostgreSQL {self.postgresql}, "
            f"TimescaleDB {self.version}, {self.edition} edition ({licence})"
        )


def with_dbname(conninfo: str, dbname: str) -> str:
    """Return `conninfo` (URL or key=value) pointing at database `dbname`."""
    return make_conninfo(conninfo, dbname=dbname)


def as_role(conninfo: str, role: str) -> str:
    """Return `conninfo` logging in as the service role `role`."""
    return make_conninfo(conninfo, user=role, password=ROLE_PASSWORDS[role])


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


def describe_server(url: str, source: str) -> Server:
    """What the server at `url` runs: PostgreSQL's version, TimescaleDB's version and edition."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT default_version, current_setting('timescaledb.license', true),"
            " split_part(current_setting('server_version'), ' ', 1)"
            " FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
    if row is None:
        raise RuntimeError(f"{source}: the server has no TimescaleDB extension")
    return Server(url, source, row[0], row[2], "timescale" if row[1] == "timescale" else "apache")


@functools.cache
def server_url() -> tuple[str, str]:
    """The admin URL of the server the tests use, and where it comes from: TEST_DATABASE_URL,
    else a local cluster (LOCAL_DB_EDITION picks its edition), else testcontainers."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        return url, "TEST_DATABASE_URL"
    if docker_answers():
        return "", f"testcontainers ({TIMESCALEDB_IMAGE})"
    started = subprocess.run(
        [LOCAL_DB_SCRIPT, "start"], check=True, stdout=subprocess.PIPE, text=True
    )
    return started.stdout.splitlines()[-1], "local cluster (scripts/local-db.sh)"


@functools.cache
def run_server() -> Server:
    """The server of this run, described; with testcontainers, started for the session."""
    url, source = server_url()
    if not url:
        url = start_container()
    return describe_server(url, source)


def start_container() -> str:
    """Start the official image for the rest of the process; return its admin URL."""
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # older testcontainers releases
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(TIMESCALEDB_IMAGE, driver=None)
    container.start()
    return str(container.get_connection_url())


def pytest_report_header() -> str:
    """Say which database server and edition the tests use."""
    return f"database server: {run_server().describe()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat the server after the run (the header is hidden under -q), when one was used."""
    if run_server.cache_info().currsize:
        terminalreporter.write_line(f"database server: {run_server().describe()}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test marked for the other edition, saying which edition this run has."""
    marker = item.get_closest_marker("edition")
    if marker is not None and marker.args[0] != run_server().edition:
        pytest.skip(f"{marker.args[0]} edition only; this run is on the {run_server().edition}")


@pytest.fixture(scope="session")
def database_server() -> str:
    """An admin URL of a TimescaleDB server on which the tests may create databases."""
    return run_server().url


@pytest.fixture(scope="session")
def edition() -> StorageMode:
    """The TimescaleDB edition of this run: 'timescale' or 'apache'."""
    return run_server().edition


def bootstrap(url: str) -> None:
    """Prepare a new database as the Docker image's first start does: db/init.sql, then the
    service roles (db/create-users.sh), both as the superuser of `url`."""
    params = conninfo_to_dict(url)
    env = {
        **os.environ,
        "PGHOST": str(params.get("host", "127.0.0.1")),
        "PGPORT": str(params.get("port", 5432)),
        "PGUSER": str(params["user"]),
        "PGPASSWORD": str(params.get("password", "")),
        "POSTGRES_USER": str(params["user"]),
        "POSTGRES_DB": str(params["dbname"]),
        "COLLECTOR_DB_PASSWORD": ROLE_PASSWORDS["collector"],
        "API_DB_PASSWORD": ROLE_PASSWORDS["api"],
        "GRAFANA_DB_PASSWORD": ROLE_PASSWORDS["grafana"],
    }
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", str(params["dbname"])]
    subprocess.run([*psql, "-f", str(ROOT / "db" / "init.sql")], env=env, check=True)
    subprocess.run([str(ROOT / "db" / "create-users.sh")], env=env, check=True)
    # Roles outlive databases: make sure those of an earlier run have this run's passwords.
    with psycopg.connect(url, autocommit=True) as conn:
        for role, password in ROLE_PASSWORDS.items():
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )


@pytest.fixture(scope="session")
def template_database(database_server: str) -> Iterator[str]:
    """Yield the name of a template database holding the schema, dropped after the session."""
    name = f"datatracker_template_{secrets.token_hex(4)}"
    execute(database_server, "CREATE DATABASE {}", name)
    url = with_dbname(database_server, name)
    bootstrap(url)
    migrate(url)
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


# The privileges on the database itself (migration 0006 takes TEMPORARY from PUBLIC), which
# CREATE DATABASE ... TEMPLATE does not copy: one GRANT per privilege the template grants.
TEMPLATE_GRANTS = """
SELECT a.privilege_type, coalesce(r.rolname, 'PUBLIC')
FROM pg_database AS d, aclexplode(d.datacl) AS a
LEFT JOIN pg_roles AS r ON r.oid = a.grantee
WHERE d.datname = %s AND d.datacl IS NOT NULL
"""


def copy_database_privileges(conninfo: str, template: str, name: str) -> None:
    """Give database `name` the privileges on it that `template` has on itself."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        grants = conn.execute(TEMPLATE_GRANTS, [template]).fetchall()
        if not grants:
            return  # the defaults, which the clone has too
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
        for privilege, grantee in grants:
            conn.execute(
                sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
                    sql.SQL(privilege),
                    sql.Identifier(name),
                    sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee),
                )
            )


@pytest.fixture
def database_url(database_server: str, template_database: str) -> Iterator[str]:
    """Yield the superuser conninfo of a fresh database cloned from the template (for setting
    up and inspecting), dropped afterwards."""
    name = f"datatracker_test_{secrets.token_hex(4)}"
    execute(database_server, "CREATE DATABASE {} TEMPLATE {}", name, template_database)
    copy_database_privileges(database_server, template_database, name)
    yield with_dbname(database_server, name)
    execute(database_server, "DROP DATABASE {} WITH (FORCE)", name)


@pytest.fixture
def collector_url(database_url: str) -> str:
    """The test's database as the collector logs in to it (role `collector`)."""
    return as_role(database_url, "collector")


@pytest.fixture
def api_url(database_url: str) -> str:
    """The test's database as the API logs in to it (role `api`)."""
    return as_role(database_url, "api")


@pytest.fixture
def grafana_url(database_url: str) -> str:
    """The test's database as Grafana logs in to it (role `grafana`)."""
    return as_role(database_url, "grafana")


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """Yield an autocommit superuser connection to the test's database, for setting up and
    inspecting."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        yield connection
