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
CHECK_SECONDS, at each full sync round (a drop committed before a request is then seen by
it), and when apply_retention() announces `storage`; it follows what changed (api/windows.py:
a compression changes nothing, a chunk dropped wholly before the 24 hours neither).

The cache keeps values only while its listening connection answers: a value kept across a
lost connection could outlive a change announced while nobody listened. A connection that
stops answering without closing (a frozen server process, a silent network) stops values
being served TRUSTED_SECONDS after its last answer at the latest.

A request answered from the price windows, or with a kept value (`get_synced`), first waits
for a sync round of the listener (`synced`): every commit visible before the request came has
then been announced and read (api/freshness.py). Requests that come while a round runs share
the next one.

Which server each read runs on. The listener's connection goes to API_LISTEN_URL (by default
DATABASE_URL): LISTEN, the sync rounds and the checks of ticks_storage(), which must see the
primary. Every read of what is served runs where DATABASE_URL points: the windows' bulk
load, the read-backs of announced changes and of dropped chunks, the markets and the ranking
(the listener's second connection), and the SQL answers of the routes (the pool). With a
standby there (api/replica.py) each of them first waits until the standby shows every commit
visible on the primary at that moment (`caught_up`): the listener as long as it takes (the
windows are not served meanwhile: it stops answering), the rest at most
API_REPLICA_WAIT_SECONDS, then 503. On one server (the default) the listener reads on its own
connection and nothing waits.
"""

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from cachetools import TLRUCache

from api import announcements, heap, metrics
from api.first_row import first_row
from api.freshness import Snapshot, nothing_completed_since, parse_snapshot
from api.prebuild import Prebuilder
from api.replica import Replica, ReplicaBehind
from api.waiters import Waiters
from api.windows import QUERIES, PriceWindows, chunk_ids
from datatracker.database import redact_dsn

T = TypeVar("T")

# What the database announces changes of (db/init.sql): the ticks, and the stored ranking
# (tables rankings and rankings_window). A value says which of them it was read from.
TICKS = announcements.TICKS
RANKING = announcements.RANKING
STORAGE = announcements.STORAGE
SOURCES = (TICKS, RANKING)
# Between notifications the listener checks its connection (and the chunks of ticks) this
# often, and gives a check this long to answer; values are served only while the last answer
# is at most TRUSTED_SECONDS old. After losing the connection it tries again this long after.
CHECK_SECONDS = 0.5
ANSWER_SECONDS = 1.0
TRUSTED_SECONDS = 1.5
RECONNECT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 5
# A request waits at most this long for a sync round (and the changes it found to be read),
# then reads SQL.
CATCH_UP_SECONDS = 2.0
CHANNEL = b"datatracker_changes"
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

    def __init__(
        self,
        max_bytes: int,
        windows: PriceWindows | None = None,
        replica: Replica | None = None,
        prebuilder: Prebuilder | None = None,
    ) -> None:
        self._max_bytes = max_bytes
        self.replica = replica  # the standby DATABASE_URL names, if it names one
        self.windows = windows if windows is not None else PriceWindows(0)
        self.prebuilder = prebuilder  # builds the loaded windows' first answers beside
        self._entries: TLRUCache[Hashable, Entry] = TLRUCache(
            maxsize=max(max_bytes, 1),
            ttu=lambda _key, entry, _now: entry.expires,
            getsizeof=lambda entry: entry.size,
        )
        self._listening = False
        self._answered_at = -math.inf  # time.monotonic() of the listener's last answer
        self._changes: Counter[str] = Counter()
        self._complaints = announcements.Complaints()
        self._inbox: list[str] = []  # payloads received, not yet handled
        self._wake = asyncio.Event()  # the listener's socket has input, or a round is wanted
        self._waiters = Waiters()  # requests waiting for a sync round
        self._synced: Snapshot | None = None  # the last full round's snapshot
        self._synced_xid = 0  # and its own transaction
        self._loading: asyncio.Task[None] | None = None
        self._storage = ""  # ticks_storage() at the last check
        self._checked_at = -math.inf  # time.monotonic() of the last check

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

    async def get_synced(self, key: Hashable, kind: type[T]) -> T | None:
        """The value `get` gives once a sync round has shown that no change committed before
        this call concerns it (`synced`); None when not kept, or when no round came in time."""
        if self.get(key, kind) is None or not await self.synced():
            return None
        return self.get(key, kind)

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

    async def synced(self) -> bool:
        """Wait for a sync round that begins after this call: every commit visible now has
        then been announced and read. False when the listener is not trusted or the round
        takes longer than CATCH_UP_SECONDS, or than the listener may go unanswered."""
        if not self._trusted():
            return False
        # No longer than values may be served without an answer from the listener.
        deadline = min(time.monotonic() + CATCH_UP_SECONDS, self._answered_at + TRUSTED_SECONDS)
        waiter = self._waiters.add(deadline)
        self._wake.set()
        return await waiter

    def _listen_from_now(self, listening: bool) -> None:
        self._listening = listening
        self._answered_at = time.monotonic() if listening else -math.inf
        self._synced = None
        self._inbox.clear()
        self.clear()
        if not listening:
            self._stop_loading()
            self.windows.stop()
            self._waiters.answer_all(False)

    def _read_url(self, listen_url: str) -> str:
        return listen_url if self.replica is None else self.replica.standby_url

    def _load(self, conninfo: str) -> None:
        """Load every window in bulk, in the background (a load under way starts again)."""
        self._stop_loading()
        self._loading = asyncio.create_task(self._load_windows(conninfo))

    async def _load_windows(self, conninfo: str) -> None:
        try:
            await self.windows.load(conninfo, self.caught_up)
            if self.prebuilder is not None:
                self.prebuilder.offer(self.windows.held())
        except (psycopg.Error, TimeoutError) as error:
            reason = str(error).strip().splitlines()[0] if str(error) else "no answer"
            log.warning("price windows not loaded in bulk, read when asked: %s", redact_dsn(reason))

    def _stop_loading(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
            self._loading = None

    async def caught_up(self) -> None:
        """Return once a read where DATABASE_URL points shows every commit visible on the
        primary now: at once without a standby; ReplicaBehind after API_REPLICA_WAIT_SECONDS."""
        if self.replica is not None:
            await self.replica.fresh()

    async def _standby_caught_up(self) -> None:
        """The listener's `caught_up`: waits as long as it takes, saying so once."""
        if self.replica is None:
            return
        started, said = time.monotonic(), False
        while True:
            try:
                await self.replica.fresh()
            except ReplicaBehind as behind:
                if not said:
                    log.warning("%s: the changes announced are read once it has", behind)
                    said = True
                continue
            if said:
                log.warning("standby caught up after %.1f s", time.monotonic() - started)
            return

    @asynccontextmanager
    async def _reader(
        self, conn: psycopg.AsyncConnection
    ) -> AsyncIterator[psycopg.AsyncConnection]:
        """The listener's connection for reads: `conn` itself, or one to the standby."""
        if self.replica is None:
            yield conn
            return
        async with await psycopg.AsyncConnection.connect(
            self.replica.standby_url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="datatracker-api-cache-reads",
        ) as reader:
            yield reader

    async def listen(self, conninfo: str) -> None:
        """Clear the cache on each announced change, until cancelled. The cache keeps nothing
        while this is not connected; it reconnects after a lost connection. `conninfo` is the
        primary's (API_LISTEN_URL)."""
        if not self._enabled:
            return
        said_off = False
        try:
            while True:
                try:
                    async with (
                        await psycopg.AsyncConnection.connect(
                            conninfo,
                            autocommit=True,
                            connect_timeout=CONNECT_TIMEOUT_SECONDS,
                            application_name="datatracker-api-cache",
                        ) as conn,
                        self._reader(conn) as reader,
                    ):
                        conn.add_notify_handler(lambda notify: self._inbox.append(notify.payload))
                        # A full sync round commits; it need not wait for the disk.
                        await conn.execute("SET synchronous_commit TO off")
                        await conn.execute("LISTEN datatracker_changes")
                        storage = await self._check(conn)
                        self._listen_from_now(True)
                        metrics.LISTENER_CONNECTS.inc()
                        if self.windows.enabled:
                            await self._standby_caught_up()
                            await self.windows.start(reader)
                            self._load(self._read_url(conninfo))
                        said_off = False
                        log.info("response cache on: listening for changes to the data")
                        await self._follow_changes(conn, conninfo, storage, reader)
                except (psycopg.Error, TimeoutError) as error:
                    reason = str(error).strip().splitlines()[0] if str(error) else "no answer"
                    if self._listening or not said_off:
                        # INFO: the outage has its own line each way (api.app).
                        log.info(
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

    async def _follow_changes(
        self,
        conn: psycopg.AsyncConnection,
        conninfo: str,
        storage: str,
        reader: psycopg.AsyncConnection,
    ) -> None:
        """Until the connection fails: wait for an announcement, a request's sync round or
        the next check; read what changed; release the requests the round was for."""
        self._storage, self._checked_at = storage, time.monotonic()
        while True:
            await self._idle(conn, self._checked_at + CHECK_SECONDS - time.monotonic())
            if self._waiters:  # let the requests already read join this round
                await asyncio.sleep(0)
            self._receive(conn)
            waiters = self._waiters.take()
            try:
                reload = await self._read_changes(conn, waiters, reader)
            except BaseException:
                self._waiters.answer(waiters, False)
                raise
            self._waiters.answer(waiters, True)
            if reload and self.windows.enabled:
                self._load(self._read_url(conninfo))

    async def _read_changes(
        self,
        conn: psycopg.AsyncConnection,
        waiters: list[asyncio.Future[bool]],
        reader: psycopg.AsyncConnection,
    ) -> bool:
        """A sync round if requests wait for one, then read what the announcements received
        and the chunks of ticks say changed, reading them on `reader` (`conn` itself on one
        server); True when every window must be loaded again."""
        windows = self.windows
        # A full round reads the chunks too: a drop committed before it fires no trigger.
        read_storage = await self._sync(conn) if waiters else False
        payloads, self._inbox = self._inbox, []
        changes = []
        for payload in payloads:
            change = announcements.parse(payload, now_micros(), windows.retention_us)
            if change.malformed:
                self._complaints.malformed(payload)
            if change.source == STORAGE:  # apply_retention() dropped chunks: read them below
                read_storage = True
                metrics.announced(change.source)
                continue
            changes.append(change)
            self.changed(change.source)
            windows.announce(change.source)
        reload = False
        if read_storage or time.monotonic() - self._checked_at >= CHECK_SECONDS:
            reload = await self._follow_storage(conn, reader)
        if changes:
            await self._standby_caught_up()
        for change in changes:
            reload |= await windows.apply(reader, change, now_micros())
            metrics.announced(change.source)
        if changes or reload:
            heap.trim()
        return reload

    async def _follow_storage(
        self, conn: psycopg.AsyncConnection, reader: psycopg.AsyncConnection
    ) -> bool:
        """Read ticks_storage() on the listener's connection and follow what changed since the
        last read (chunks added, dropped, compressed or decompressed), reading on `reader`;
        True when every window must be loaded again."""
        now = await self._check(conn)
        self._checked_at = time.monotonic()
        if now == self._storage:
            return False
        if chunk_ids(self._storage) - chunk_ids(now):  # dropped
            self.changed(TICKS)
        await self._standby_caught_up()
        reload = await self.windows.chunks_changed(reader, self._storage, now, now_micros())
        self._storage = now
        return reload

    async def _idle(self, conn: psycopg.AsyncConnection, seconds: float) -> None:
        """Wait until the listener's socket has input, a request wants a sync round, or
        `seconds` have passed."""
        if self._inbox or self._waiters or seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        socket = conn.pgconn.socket
        self._wake.clear()
        loop.add_reader(socket, self._wake.set)
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(socket)

    def _receive(self, conn: psycopg.AsyncConnection) -> None:
        """Take the announcements waiting on the socket (without blocking)."""
        pgconn = conn.pgconn
        pgconn.consume_input()
        while (notify := pgconn.notifies()) is not None:
            if notify.relname == CHANNEL:
                self._inbox.append(notify.extra.decode("utf-8", "replace"))

    async def _sync(self, conn: psycopg.AsyncConnection) -> bool:
        """A sync round (api/freshness.py): afterwards every commit made before it began has
        been announced, its payload in the inbox. True when it was a full round (something
        was committed since the last: maybe a chunk dropped, which no trigger announces)."""
        row = await self._ask(conn, QUERIES["sync_snapshot"])
        now = parse_snapshot(str(row[0]))
        synced = self._synced
        if synced is not None and nothing_completed_since(synced, self._synced_xid, now):
            return False
        row = await self._ask(conn, QUERIES["sync_notify"])
        self._synced, self._synced_xid = parse_snapshot(str(row[0])), int(str(row[1]))
        return True

    async def _ask(self, conn: psycopg.AsyncConnection, query: str) -> tuple[str | None, ...]:
        """The first row of a query on the listener's connection, within ANSWER_SECONDS, as
        text (api/first_row.py: libpq's calls, not a cursor's: a round is paid per request)."""
        try:
            async with asyncio.timeout(ANSWER_SECONDS):
                row = await first_row(conn.pgconn, query.encode())
        except TimeoutError:
            self._answered_at = -math.inf
            raise TimeoutError(f"no answer within {ANSWER_SECONDS} s") from None
        self._answered_at = time.monotonic()
        self._receive(conn)  # the announcements sent before the answer
        if row is None:
            raise psycopg.DataError(f"no row from {query.splitlines()[0]}")
        return row

    async def _check(self, conn: psycopg.AsyncConnection) -> str:
        """The chunks of ticks as ticks_storage() describes them; a check that the connection
        answers, which stops values being served at once when it does not."""
        return str((await self._ask(conn, "SELECT ticks_storage()"))[0])


def now_micros() -> int:
    """Now, in microseconds since the Unix epoch."""
    return time.time_ns() // 1000
