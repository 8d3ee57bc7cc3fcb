"""One statement on the listener's connection through libpq's own calls: its first row.

The listener (api/cache.py) runs a sync round for nearly every batch of hot requests, so the
round's cost is paid per request. Through psycopg's `execute` and `fetchone` (a cursor, the
prepared-statement bookkeeping, generator-based waiting) a round of one short statement took
~90 µs of CPU on the project's VM; sent with libpq's calls as here, ~40 µs (bench/RESULTS.md,
"API CPU per request"). The listener's connection is used by the listener alone, so nothing
else can be waiting on it meanwhile. Notifications that arrive with the answer stay in
libpq's queue for the listener to take (`pgconn.notifies()`).
"""

import asyncio

from psycopg import errors, pq
from psycopg.pq.abc import PGconn

ROWS = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)


async def first_row(pgconn: PGconn, query: bytes) -> tuple[str | None, ...] | None:
    """The first row of `query` (the simple query protocol: values as text), None if it has
    none; psycopg's error for a statement that fails or a connection that breaks."""
    loop = asyncio.get_running_loop()
    pgconn.send_query(query)
    while pgconn.flush():  # a short query is written at once; a full socket buffer waits
        await ready(loop, pgconn.socket, writing=True)
    row, failed = None, None
    while True:
        pgconn.consume_input()
        while pgconn.is_busy():
            await ready(loop, pgconn.socket)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        if result.status not in ROWS:
            failed = failed or errors.error_from_result(result)
        elif row is None and result.ntuples:
            row = tuple(text(result.get_value(0, column)) for column in range(result.nfields))
    if failed is not None:
        raise failed
    return row


def text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


async def ready(loop: asyncio.AbstractEventLoop, socket: int, writing: bool = False) -> None:
    """Return once `socket` can be read (or written, if `writing`)."""
    done: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    if writing:
        loop.add_writer(socket, wake)
    else:
        loop.add_reader(socket, wake)
    try:
        await done
    finally:
        if writing:
            loop.remove_writer(socket)
        else:
            loop.remove_reader(socket)
