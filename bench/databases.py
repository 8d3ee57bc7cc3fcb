"""The benchmarks' own databases: created on the local server, given the schema, reset."""

from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from datatracker.queries import load_queries
from datatracker.schema import migrate

QUERIES = load_queries(Path(__file__).with_name("queries.sql"))

# The local cluster of scripts/local-db.sh; every benchmark database is named bench_*.
DEFAULT_SERVER = "postgresql://datatracker:datatracker@127.0.0.1:5433/postgres"
OWN_PREFIX = "bench_"


def database_url(name: str, server: str = DEFAULT_SERVER) -> str:
    """The conninfo of database `name` on `server`."""
    return make_conninfo(server, dbname=name)


def database_name(url: str) -> str:
    """The database a conninfo names."""
    return str(conninfo_to_dict(url).get("dbname", ""))


def exists(url: str) -> bool:
    """Whether the database `url` names exists on its server."""
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        row = conn.execute(QUERIES["database_exists"], {"name": database_name(url)}).fetchone()
    return bool(row and row[0])


def create(url: str, *, fresh: bool = False) -> None:
    """Create the database `url` names (a bench_* one) unless it exists; `fresh` drops it first."""
    name = database_name(url)
    if not name.startswith(OWN_PREFIX):
        raise ValueError(f"benchmarks only create or drop databases named {OWN_PREFIX}*: {name}")
    admin = make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if fresh:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        row = conn.execute(QUERIES["database_exists"], {"name": name}).fetchone()
        if not (row and row[0]):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def prepare(url: str, *, fresh: bool = False) -> str:
    """Make `url` a database holding the schema and the original table; return `url`.

    A database that exists and is not a bench_* one (a test's) is used as it is.
    """
    if fresh or not exists(url):
        create(url, fresh=fresh)
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(QUERIES["create_original_prices"])
    return url
