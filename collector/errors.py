"""How the collector tells failures apart, and names them in one line."""

import psycopg

# Errors that mean "the database cannot be reached now", not "this data is wrong":
# connection failures, server shutdowns and restarts, a full disk, a pool timeout
# (psycopg_pool.PoolTimeout is an OperationalError), a deadlock or a cancelled statement.
# A cycle failing with one of these is tried again; with anything else it is set aside.
UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)


def storable(text: str) -> str:
    """`text` without NUL characters, which PostgreSQL text cannot hold."""
    return text.replace("\x00", "")


def describe(error: BaseException) -> str:
    """An exception as one short line fit to store: its class and its message's first line."""
    lines = storable(str(error)).strip().splitlines()
    message = lines[0][:200] if lines else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
