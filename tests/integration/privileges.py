"""Which statements a connection is refused: for the tests of what each role and edition may do."""

from collections.abc import Iterable
from typing import LiteralString

import psycopg


async def refused(
    conn: psycopg.AsyncConnection,
    statements: Iterable[LiteralString],
    *errors: type[psycopg.Error],
) -> list[LiteralString]:
    """The `statements` that `conn` (in autocommit) is refused with one of `errors` (by default
    InsufficientPrivilege), in order; any other error is raised."""
    caught = errors or (psycopg.errors.InsufficientPrivilege,)
    refusals = []
    for statement in statements:
        try:
            await conn.execute(statement)
        except caught:
            refusals.append(statement)
    return refusals
