"""Response bodies kept until the data behind them changes.

Prices change once per collection cycle, while readers may ask for the same pair many times
a minute. `ResponseCache` keeps encoded bodies and drops them all whenever the database
announces a change to the ticks or to the stored ranking (channel `datatracker_changes`,
raised by statement triggers in db/init.sql, whoever writes). A body may also carry its own
deadline: a `/prices` body goes stale without any write when its oldest price leaves the
24-hour window.

The cache keeps bodies only while its listening connection is up: a body kept across a lost
connection could outlive a change announced while nobody listened. A change reaches the
cache a notification's delivery after its commit (well under a millisecond on one host).
"""

import asyncio
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass

import psycopg
from cachetools import TLRUCache

# Between notifications the listener checks its connection this often (and gives a check
# this long to answer); after losing it, it tries again this long after.
HEARTBEAT_SECONDS = 5.0
RECONNECT_SECONDS = 2.0

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    expires: float  # time.monotonic() after which the body is stale


class ResponseCache:
    """Encoded bodies by request key, at most `max_bytes` of them, least recently used out."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: TLRUCache[Hashable, Entry] = TLRUCache(
            maxsize=max(max_bytes, 1),
            ttu=lambda _key, entry, _now: entry.expires,
            getsizeof=lambda entry: len(entry.body),
        )
        self._listening = False
        self._generation = 0

    @property
    def status(self) -> str:
        """`listening` (bodies are kept), `not listening` (none until the database is back)
        or `off` (API_CACHE_MB=0)."""
        if self._max_bytes <= 0:
            return "off"
        return "listening" if self._listening else "not listening"

    def get(self, key: Hashable) -> bytes | None:
        """The body kept for `key`, or None."""
        entry = self._entries.get(key)
        return None if entry is None else entry.body

    def generation(self) -> int:
        """A token to take before reading the database for a body: `put` refuses the body if
        the data changed since, since the read may predate the change."""
        return self._generation

    def put(
        self, key: Hashable, body: bytes, generation: int, fresh_for: float = float("inf")
    ) -> None:
        """Keep `body` for at most `fresh_for` seconds, unless the data changed since
        `generation` was taken or nothing is listening for changes."""
        if self._listening and generation == self._generation and len(body) <= self._max_bytes:
            self._entries[key] = Entry(body, time.monotonic() + fresh_for)

    def clear(self) -> None:
        """Drop every body: the data changed."""
        self._generation += 1
        self._entries.clear()

    def _listen_from_now(self, listening: bool) -> None:
        self._listening = listening
        self.clear()

    async def listen(self, conninfo: str) -> None:
        """Clear the cache on each announced change, until cancelled. The cache keeps nothing
        while this is not connected; it reconnects after a lost connection."""
        if self._max_bytes <= 0:
            return
        try:
            while True:
                try:
                    async with await psycopg.AsyncConnection.connect(
                        conninfo,
                        autocommit=True,
                        connect_timeout=int(HEARTBEAT_SECONDS),
                        application_name="datatracker-api-cache",
                    ) as conn:
                        await conn.execute("LISTEN datatracker_changes")
                        self._listen_from_now(True)
                        log.info("response cache on: listening for changes to the data")
                        await self._clear_on_changes(conn)
                except (psycopg.Error, TimeoutError) as error:
                    if self._listening:
                        reason = str(error).strip().splitlines()[0] if str(error) else "no answer"
                        log.warning("response cache off until the database is back: %s", reason)
                    self._listen_from_now(False)
                    await asyncio.sleep(RECONNECT_SECONDS)
        finally:
            self._listen_from_now(False)

    async def _clear_on_changes(self, conn: psycopg.AsyncConnection) -> None:
        while True:
            async for _ in conn.notifies(timeout=HEARTBEAT_SECONDS):
                self.clear()
            await asyncio.wait_for(conn.execute("SELECT 1"), HEARTBEAT_SECONDS)
