"""A hot standby to read from, and waiting until it has replayed what the primary holds.

With API_LISTEN_URL naming the primary and DATABASE_URL a standby of it, the API reads from
the standby while it hears of changes on the primary (LISTEN fails on a standby). A change
is announced once committed on the primary, possibly before the standby has replayed it: a
read made then would show the state before it. So before such a read the API asks the
primary where its WAL ends (`pg_current_wal_insert_lsn()`) and waits until the standby's
replay has passed that position (`pg_last_wal_replay_lsn()`), at most API_REPLICA_WAIT_SECONDS;
past that, `ReplicaBehind` (the request gets 503 with Retry-After). PostgreSQL has no wait
for an LSN of its own before version 19 (`WAIT FOR LSN`), so the standby is polled: one poll
at a time, on a connection of its own, for every read waiting; and one question to the
primary at a time, for every read that came before it was sent.
"""

import asyncio
import logging
import math
from pathlib import Path
from typing import Any

import psycopg

from datatracker.database import redact_dsn
from datatracker.queries import load_queries

QUERIES = load_queries(Path(__file__).with_name("replica.sql"))

# How often a standby not yet past a position is asked again.
POLL_SECONDS = 0.005
CONNECT_TIMEOUT_SECONDS = 5
# WAL pages begin with a header of this many bytes (the first page of a segment with one of
# LONG_PAGE_HEADER_BYTES): no record ends inside one.
LONG_PAGE_HEADER_BYTES = 40
# A standby known to be none (not in recovery) has replayed everything there is.
EVERYTHING = math.inf

log = logging.getLogger(__name__)


class ReplicaBehind(TimeoutError):
    """The standby did not replay the primary's position within API_REPLICA_WAIT_SECONDS."""


def reached(replayed: float, target: int, wal_block_size: int = 8192) -> bool:
    """Whether a standby that has replayed up to `replayed` holds everything written before
    `target` (both WAL positions as numbers). The primary's insert position may point just
    past a page's header, where no record ends: a replay that ended at that page's start
    has then reached it."""
    if replayed >= target:
        return True
    into_page = target % wal_block_size
    return into_page <= LONG_PAGE_HEADER_BYTES and replayed >= target - into_page


class Shared:
    """One run of a question at a time for every caller: a caller joins the next run that
    begins after it came (never one under way, which may predate what it waits for)."""

    def __init__(self, ask: Any) -> None:
        self._ask = ask
        self._next: asyncio.Future[Any] | None = None
        self._running: asyncio.Task[None] | None = None

    async def __call__(self) -> Any:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        waiting = self._next
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run())
        return await asyncio.shield(waiting)

    async def _run(self) -> None:
        while (answering := self._next) is not None:
            self._next = None
            try:
                answering.set_result(await self._ask())
            except Exception as error:  # each caller gets it (read once: not logged twice)
                answering.set_exception(error)
                answering.exception()


class Replica:
    """The standby at `standby_url`, replicating the primary at `primary_url`."""

    def __init__(self, standby_url: str, primary_url: str, wait_seconds: float) -> None:
        self.standby_url = standby_url
        self.primary_url = primary_url
        self.wait_seconds = wait_seconds
        self.replayed = -EVERYTHING  # the furthest position the standby was seen to replay
        self._block = 8192
        self._connections: dict[str, psycopg.AsyncConnection] = {}
        self._primary_position = Shared(self._ask_primary)
        self._replay = Shared(self._ask_standby)

    async def fresh(self) -> None:
        """Return once the standby shows every commit visible on the primary when this was
        called; ReplicaBehind after `wait_seconds`, psycopg.OperationalError when either
        server does not answer."""
        if self.replayed == EVERYTHING:  # a primary after all: nothing to wait for
            return
        try:
            async with asyncio.timeout(self.wait_seconds):
                target = await self._primary_position()
                while not reached(self.replayed, target, self._block):
                    self.replayed = max(self.replayed, await self._replay())
                    if not reached(self.replayed, target, self._block):
                        await asyncio.sleep(POLL_SECONDS)
        except TimeoutError:
            raise ReplicaBehind(
                f"the standby has not replayed the primary's last changes"
                f" within {self.wait_seconds:g} s"
            ) from None

    async def close(self) -> None:
        """Close the connections to both servers."""
        connections, self._connections = self._connections, {}
        for conn in connections.values():
            await conn.close()

    async def _ask_primary(self) -> int:
        return int((await self._first_row(self.primary_url, "primary_position"))[0])

    async def _ask_standby(self) -> float:
        in_recovery, replayed = await self._first_row(self.standby_url, "replayed_position")
        if not in_recovery:  # promoted, or a primary after all: nothing to wait for
            return EVERYTHING
        return float(replayed)

    async def _first_row(self, conninfo: str, query: str) -> tuple[Any, ...]:
        conn = await self._connection(conninfo)
        try:
            cursor = await conn.execute(QUERIES[query])
            row = await cursor.fetchone()
        except psycopg.Error:
            self._connections.pop(conninfo, None)
            await conn.close()
            raise
        if row is None:
            raise psycopg.DataError(f"no row from {query}")
        return tuple(row)

    async def _connection(self, conninfo: str) -> psycopg.AsyncConnection:
        conn = self._connections.get(conninfo)
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                conninfo,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name="datatracker-api-replica",
            )
            if conninfo == self.primary_url:
                cursor = await conn.execute(QUERIES["wal_block_size"])
                self._block = int((await cursor.fetchone() or (8192,))[0])
            log.debug("replica: connected to %s", redact_dsn(conninfo))
            self._connections[conninfo] = conn
        return conn


async def lag_seconds(conn: psycopg.AsyncConnection) -> float | None:
    """How far the standby behind `conn` is behind what it received, in seconds (see
    replica_lag in replica.sql); None on a primary."""
    cursor = await conn.execute(QUERIES["replica_lag"])
    row = await cursor.fetchone()
    return None if row is None or row[0] is None else round(float(row[0]), 3)
