"""What the API read from the database, kept until the data behind it changes.

Prices change once per collection cycle, while readers may ask for the same pair many times a
minute. `ResponseCache` keeps each value with what it was read from (the ticks, the stored
ranking) until the database announces a change to that: statement triggers (migrations 0001
and 0004) send `NOTIFY datatracker_changes` with `ticks`, `ranking` or `markets` as payload,
whoever writes. So a ranking refresh drops the ranks but not the prices. A value may also
carry its own deadline: a pair's prices go stale without any write when the oldest leaves the
24-hour window.

Chunks dropped or compressed (drop_chunks, TimescaleDB's retention and compression policies)
fire no trigger: the listener reads `ticks_storage()` at each check of its connection, every
CHECK_SECONDS, and drops every value when the chunks changed.

The cache keeps values only while its listening connection answers: a value kept across a
lost connection could outlive a change announced while nobody listened. A connection that
stops answering without closing (a frozen server process, a silent network) stops values
being served TRUSTED_SECONDS after its last answer at the latest. A change reaches the cache
a notification's delivery after its commit (well under a millisecond on one host).
"""

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from cachetools import TLRUCache

from api import announcements, heap
from api.windows import PriceWindows
from datatracker.database import redact_dsn

T = TypeVar("T")

# What the database announces changes of (db/init.sql): the ticks, and the stored ranking
# (tables rankings and rankings_window). A value says which of them it was read from.
TICKS = announcements.TICKS
RANKING = announcements.RANKING
SOURCES = (TICKS, RANKING)
# Between notifications the listener checks its connection (and the chunks of ticks) this
# often, and gives a check this long to answer; values are served only while the last answer
# is at most TRUSTED_SECONDS old. After losing the connection it tries again this long after.
CHECK_SECONDS = 0.5
ANSWER_SECONDS = 1.0
TRUSTED_SECONDS = 1.5
RECONNECT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 5
# What an entry costs beyond its value's size: the key, the Entry, the cache's bookkeeping
# (measured with tracemalloc: tests/unit/test_cache_bytes.py).
ENTRY_OVERHEAD_BYTES = 600

log = logging.getLogger(__name__)


# Which changes a value was read between: (source, its change count) for each source (TICKS,
# RANKING) it was read from.
Token = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Entry:
    value: object
    size: int  # bytes, roughly: what the value counts against the cache's budget
    token: Token
    expires: float  # time.monotonic() after which the value is stale


class ResponseCache:
    """Values by request key, at most `max_bytes` of them, least recently used out."""

    def __init__(self, max_bytes: int, windows: PriceWindows | None = None) -> None:
        self._max_bytes = max_bytes
        self.windows = windows if windows is not None else PriceWindows(0)
        self._entries: TLRUCache[Hashable, Entry] = TLRUCache(
            maxsize=max(max_bytes, 1),
            ttu=lambda _key, entry, _now: entry.expires,
            getsizeof=lambda entry: entry.size,
        )
        self._listening = False
        self._answered_at = -math.inf  # time.monotonic() of the listener's last answer
        self._changes: Counter[str] = Counter()
        self._complaints = announcements.Complaints()

    @property
    def status(self) -> str:
        """`listening` (values are kept), `not listening` (none until the database is back)
        or `off` (API_CACHE_MB=0)."""
        if not self._enabled:
            return "off"
        return "listening" if self._trusted() else "not listening"

    @property
    def _enabled(self) -> bool:
        return self._max_bytes > 0 or self.windows.enabled

    def windows_trusted(self) -> bool:
        """Whether the price windows may be served now."""
        return self.windows.serving and self._trusted()

    def _trusted(self) -> bool:
        """Whether the listener is connected and answered recently enough to serve values."""
        return self._listening and time.monotonic() - self._answered_at <= TRUSTED_SECONDS

    def token(self, *sources: str) -> Token:
        """Take before reading `sources` (TICKS, RANKING) for a value, and give to `put` with
        it: `put` refuses the value if one changed since, as the read may predate the change."""
        return tuple((source, self._changes[source]) for source in sources)

    def get(self, key: Hashable, kind: type[T]) -> T | None:
        """The value of type `kind` kept for `key`, or None."""
        entry = self._entries.get(key)
        if entry is None or entry.token != self.token(*(source for source, _ in entry.token)):
            return None
        if not self._trusted():
            return None
        return entry.value if isinstance(entry.value, kind) else None

    def put(
        self, key: Hashable, value: object, size: int, token: Token, fresh_for: float = math.inf
    ) -> None:
        """Keep `value` for at most `fresh_for` seconds or until a source of `token` changes,
        unless one changed already or nothing is listening for changes."""
        if (
            self._trusted()
            and token == self.token(*(source for source, _ in token))
            and ENTRY_OVERHEAD_BYTES + size <= self._max_bytes
        ):
            expires = time.monotonic() + fresh_for
            self._entries[key] = Entry(value, ENTRY_OVERHEAD_BYTES + size, token, expires)

    def changed(self, source: str) -> None:
        """Drop what was read from an announcement's source (every value, when it is not
        TICKS or RANKING: api/announcements.py)."""
        if source in SOURCES:
            self._changes[source] += 1
        else:
            self.clear()

    def clear(self) -> None:
        """Drop every value."""
        self._changes.update(SOURCES)
        self._entries.clear()

    def _listen_from_now(self, listening: bool) -> None:
        self._listening = listening
        self._answered_at = time.monotonic() if listening else -math.inf
        self.clear()
        if not listening:
            self.windows.stop()

    async def listen(self, conninfo: str) -> None:
        """Clear the cache on each announced change, until cancelled. The cache keeps nothing
        while this is not connected; it reconnects after a lost connection."""
        if not self._enabled:
            return
        said_off = False
        try:
            while True:
                try:
                    async with await psycopg.AsyncConnection.connect(
                        conninfo,
                        autocommit=True,
                        connect_timeout=CONNECT_TIMEOUT_SECONDS,
                        application_name="datatracker-api-cache",
                    ) as conn:
                        await conn.execute("LISTEN datatracker_changes")
                        storage = await self._check(conn)
                        self._listen_from_now(True)
                        if self.windows.enabled:
                            await self.windows.start(conn)
                        said_off = False
                        log.info("response cache on: listening for changes to the data")
                        await self._clear_on_changes(conn, storage)
                except (psycopg.Error, TimeoutError) as error:
                    reason = str(error).strip().splitlines()[0] if str(error) else "no answer"
                    if self._listening or not said_off:
                        log.warning(
                            "response cache off until the database is back: %s", redact_dsn(reason)
                        )
                        said_off = True
                    self._listen_from_now(False)
                    await asyncio.sleep(RECONNECT_SECONDS)
                except Exception:  # a bug: say so, and start again rather than serve stale
                    log.exception("response cache off: the listener failed; starting again")
                    said_off = True
                    self._listen_from_now(False)
                    await asyncio.sleep(RECONNECT_SECONDS)
        finally:
            self._listen_from_now(False)

    async def _clear_on_changes(self, conn: psycopg.AsyncConnection, storage: str) -> None:
        windows = self.windows
        while True:
            payloads = []
            # Returns at the first announcement: the windows hold requests until it is read.
            async for notification in conn.notifies(timeout=CHECK_SECONDS, stop_after=1):
                change = announcements.parse(
                    notification.payload, now_micros(), windows.retention_us
                )
                if change.malformed:
                    self._complaints.malformed(notification.payload)
                self.changed(change.source)
                windows.announce()
                payloads.append(change)
            now = await self._check(conn)
            if now != storage:
                # Chunks dropped or compressed. Or only added: announced by the write that
                # added them, but a chunk added and dropped between two checks shows only so.
                self.changed(TICKS)
                # A chunk only added was announced by its write; any other change (a chunk
                # dropped, compressed, decompressed) drops the windows, to be read again.
                if chunks(storage) - chunks(now):
                    windows.announce()
                    payloads.append(announcements.Announcement(announcements.STORAGE))
                storage = now
            for change in payloads:
                await windows.apply(conn, change, now_micros())
            if payloads:
                heap.trim()

    async def _check(self, conn: psycopg.AsyncConnection) -> str:
        """The chunks of ticks as ticks_storage() describes them; a check that the connection
        answers, which stops values being served at once when it does not."""
        try:
            cursor = await asyncio.wait_for(conn.execute("SELECT ticks_storage()"), ANSWER_SECONDS)
            row = await cursor.fetchone()
        except TimeoutError:
            # At once: closing the connection may take its own time.
            self._answered_at = -math.inf
            raise TimeoutError(f"no answer within {ANSWER_SECONDS} s") from None
        self._answered_at = time.monotonic()
        return str(row[0]) if row else ""


def chunks(storage: str) -> set[str]:
    """The chunks (id and status) a ticks_storage() text names."""
    return {part for part in storage.split(",") if part}


def now_micros() -> int:
    """Now, in microseconds since the Unix epoch."""
    return time.time_ns() // 1000
