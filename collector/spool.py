"""The spool: cycles kept on local disk (SQLite) until their transaction commits.

A cycle is on disk before it counts as kept, and deleted only once the database has
committed it, so cycles survive an outage, a SIGKILL and a restart. The spool is bounded:
past `max_bytes` of encoded cycles the oldest go first. A cycle the database refuses for
a reason other than a lost connection is moved to `set_aside`, with its error and
traceback, and stays there (it counts against the bound too).

The file, its rollback journal included, stays within `max_bytes` plus SPOOL_SLACK_BYTES
while a cycle takes at most a third of `max_bytes` (the newest cycle is always kept, however
large): the bound counts the pages the cycles take (a page is 4 kB; a small cycle may take a
whole one), and room is kept for the journal's copy of the pages a new cycle reuses. The
journal, kept between transactions so that a full disk cannot stop the deletes that free
it, is cut back to JOURNAL_LIMIT_BYTES after each. One process at a time: a
second collector on the same directory is refused (`SpoolInUse`), by a lock the kernel
releases when the holder exits, however it exits. A directory that cannot hold the spool (not
a directory, read-only, on a full disk) is refused as the spool opens (`SpoolUnusable`).

Every method is a short blocking SQLite call: the async side runs them in a thread
(`asyncio.to_thread`), never on the event loop, because an fsync can take milliseconds
to seconds on a busy disk. One connection is shared, so a lock serialises the calls.
"""

import contextlib
import errno
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from collector.report import CycleReport, ExchangeOutcome
from collector.ticks import Tick
from datatracker.symbols import normalise_symbol

SPOOL_FILE = "spool.sqlite3"
LOCK_FILE = "spool.lock"
# What the rollback journal keeps between transactions, at most (measured: a transaction
# that puts a cycle and evicts others journals a handful of pages).
JOURNAL_LIMIT_BYTES = 64 * 1024
# Beyond `max_bytes`: the journal kept between transactions, the schema's own pages and the
# B-tree's. Measured: at most 41 kB beyond it with cycles of 10 to 5,000 ticks mixed.
SPOOL_SLACK_BYTES = JOURNAL_LIMIT_BYTES + 64 * 1024
# Waiting for another connection's lock (a reader, say sqlite3 on the command line).
BUSY_SECONDS = 5.0
# What a spool that cannot be written raises (a full or read-only disk, an I/O error).
SPOOL_ERRORS = (sqlite3.Error, OSError)

SCHEMA = """
CREATE TABLE IF NOT EXISTS cycles (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     REAL    NOT NULL,
    ticks  INTEGER NOT NULL,
    body   BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS set_aside (
    seq           INTEGER PRIMARY KEY,
    at            REAL    NOT NULL,
    ticks         INTEGER NOT NULL,
    body          BLOB    NOT NULL,
    set_aside_at  REAL    NOT NULL,
    error         TEXT    NOT NULL,
    traceback     TEXT    NOT NULL,
    recorded      INTEGER NOT NULL DEFAULT 0
);
"""


class SpooledOutcome(msgspec.Struct, array_like=True):
    """One exchange's part of a cycle, its ticks as columns (symbols are derived on reading)."""

    exchange: str
    dropped: int
    attempts: int
    fetch_seconds: float
    error: str | None
    bases: list[str]
    quotes: list[str]
    prices: list[float]
    sent_us: list[int | None]  # exchange times, microseconds since the epoch


class SpooledCycle(msgspec.Struct, array_like=True):
    """A cycle as the spool keeps it: msgpack arrays, about 30 bytes a tick."""

    at_us: int
    outcomes: list[SpooledOutcome]


def _micros(at: datetime) -> int:
    return round(at.timestamp() * 1_000_000)


def _time(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def encode_cycle(report: CycleReport) -> bytes:
    """A cycle's outcomes and ticks as compact msgpack."""
    outcomes = [
        SpooledOutcome(
            o.exchange,
            o.dropped,
            o.attempts,
            o.fetch_seconds,
            o.error,
            [t.base for t in o.ticks],
            [t.quote for t in o.ticks],
            [t.price for t in o.ticks],
            [None if t.exchange_time is None else _micros(t.exchange_time) for t in o.ticks],
        )
        for o in report.outcomes
    ]
    return msgspec.msgpack.encode(SpooledCycle(_micros(report.at), outcomes))


def decode_cycle(body: bytes) -> CycleReport:
    """The cycle `encode_cycle` encoded, its ticks rebuilt."""
    cycle = msgspec.msgpack.decode(body, type=SpooledCycle)
    at = _time(cycle.at_us)
    return CycleReport(at, [_outcome(at, o) for o in cycle.outcomes])


def _outcome(at: datetime, spooled: SpooledOutcome) -> ExchangeOutcome:
    columns = zip(spooled.bases, spooled.quotes, spooled.prices, spooled.sent_us, strict=True)
    ticks = [
        Tick(
            at,
            spooled.exchange,
            normalise_symbol(base, quote),
            base,
            quote,
            price,
            None if sent is None else _time(sent),
        )
        for base, quote, price, sent in columns
    ]
    return ExchangeOutcome(
        spooled.exchange,
        ticks,
        dropped=spooled.dropped,
        attempts=spooled.attempts,
        fetch_seconds=spooled.fetch_seconds,
        error=spooled.error,
    )


class SpoolUnusable(Exception):
    """The spool's directory cannot hold the spool; the message says why, in one line."""


class SpoolInUse(SpoolUnusable):
    """Another process holds the spool's lock."""


# What an OSError's errno means for a spool directory, in the words an operator acts on.
REASONS = {
    errno.ENOSPC: "its disk is full",
    errno.EDQUOT: "its disk quota is used up",
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EEXIST: "it is not a directory",
    errno.ENOTDIR: "it is not a directory",
}


def unusable(directory: Path, error: OSError | sqlite3.Error) -> SpoolUnusable:
    """The one-line refusal of `directory` for `error`."""
    if isinstance(error, OSError):
        reason = REASONS.get(error.errno or 0) or error.strerror or str(error)
    else:
        reason = str(error)  # SQLite's own words: "database or disk is full", ...
    return SpoolUnusable(f"SPOOL_DIR {directory} cannot hold the spool: {reason}")


def lock_spool(directory: Path) -> int:
    """Take the spool's lock for this process's life; raise SpoolInUse if another holds it."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SpoolInUse(
            f"spool {directory} is in use by another collector (pid {holder}): stop it, "
            "or give this one its own SPOOL_DIR"
        ) from None
    with contextlib.suppress(OSError):  # the pid is for the message only; a full disk may refuse
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@dataclass(frozen=True, slots=True)
class Evicted:
    """Cycles the spool dropped to stay within its bound."""

    cycles: int = 0
    ticks: int = 0


@dataclass(frozen=True, slots=True)
class SetAside:
    """A cycle set aside, as the database's set_aside_cycles records it."""

    seq: int
    at: datetime
    ticks: int
    body: bytes
    set_aside_at: datetime
    error: str
    traceback: str


class Spool:
    """Cycles waiting for the database, oldest first, in a SQLite file under `directory`."""

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        """Open (or make) the spool under `directory`; raise SpoolUnusable, saying why, if it
        cannot be made, locked or written there, SpoolInUse if another process holds it."""
        try:
            directory.mkdir(parents=True, exist_ok=True)  # FileExistsError: not a directory
            self._lock_fd = lock_spool(directory)
        except OSError as error:
            raise unusable(directory, error) from None
        self.path = directory / SPOOL_FILE
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._done: set[int] = set()  # committed to the database, not yet deleted here
        try:
            self._db = self._open()
        except SPOOL_ERRORS as error:
            os.close(self._lock_fd)
            raise unusable(directory, error) from None
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._page_size = self._scalar("PRAGMA page_size")
        self._schema_pages = 1 + self._scalar("SELECT count(*) FROM sqlite_schema WHERE rootpage")
        self._bytes = self._scalar(
            "SELECT (SELECT coalesce(sum(length(body)), 0) FROM cycles)"
            " + (SELECT coalesce(sum(length(body)), 0) FROM set_aside)"
        )
        self._in_flight: int | None = None

    def _open(self) -> sqlite3.Connection:
        # Autocommit (isolation_level=None): transactions are explicit, in `_transaction`.
        db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS
        )
        # A rollback journal, not WAL: a new cycle's pages go straight into the file, within
        # the bound, where a WAL would hold them (and grow to 4 MB between checkpoints). The
        # journal holds only the few pages a transaction changes; PERSIST keeps its file (cut
        # back to the limit) so that a full disk still leaves room to delete. synchronous=FULL:
        # every commit is fsynced before it returns, so a cycle reported as kept survives a
        # power cut as well as a SIGKILL; at a commit or two per cycle that costs nothing
        # noticeable.
        try:
            db.execute("PRAGMA journal_mode=PERSIST")
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT_BYTES}")
            db.execute("PRAGMA synchronous=FULL")
            # Debian's SQLite overwrites deleted content (secure_delete=1), which journals every
            # page an eviction frees; the spool's cycles are prices, not secrets.
            db.execute("PRAGMA secure_delete=OFF")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Close the file and let go of the lock."""
        with self._lock:
            self._db.close()
            os.close(self._lock_fd)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # A full disk may have rolled the transaction back already.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _scalar(self, query: str, *params: object) -> int:
        row = self._db.execute(query, params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def put(self, report: CycleReport) -> Evicted:
        """Keep a cycle, on disk once this returns; drop the oldest cycles past the bound.
        Raises one of SPOOL_ERRORS when the file cannot take it (nothing changes then)."""
        body = encode_cycle(report)
        with self._transaction() as db:
            # Room for the cycle, and for the journal's copies of the freed pages it reuses and
            # of the pages the evictions change (measured: twice the cycle's is not enough).
            evicted, freed = self._evict(db, 3 * self._pages_for(len(body)))
            db.execute(
                "INSERT INTO cycles (at, ticks, body) VALUES (?, ?, ?)",
                (report.at.timestamp(), report.fetched, body),
            )
        self._bytes += len(body) - freed
        return evicted

    def _pages_for(self, size: int) -> int:
        """The most pages a row of `size` bytes takes: its overflow pages and a leaf."""
        return -(-size // (self._page_size - 4)) + 1

    def _data_pages(self, db: sqlite3.Connection) -> int:
        """Pages in use beyond the empty schema's, as of the open transaction."""
        in_use = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(in_use) - int(free) - self._schema_pages

    def _evict(self, db: sqlite3.Connection, pages: int) -> tuple[Evicted, int]:
        """Delete the oldest cycles (waiting or set aside) until `pages` more pages fit in the
        bound; the cycle being written is spared, and the newest cycle always fits. Returns
        what went and its encoded bytes."""
        cycles = ticks = freed = 0
        limit = self.max_bytes // self._page_size
        while self._data_pages(db) + pages > limit:
            oldest = db.execute(
                "SELECT seq, ticks, length(body), 'cycles' FROM cycles WHERE seq IS NOT ?"
                " UNION ALL SELECT seq, ticks, length(body), 'set_aside' FROM set_aside"
                " ORDER BY seq LIMIT 1",
                (self._in_flight,),
            ).fetchone()
            if oldest is None:
                break
            seq, count, size, table = oldest
            db.execute(f"DELETE FROM {table} WHERE seq = ?", (seq,))  # noqa: S608 (two names)
            self._done.discard(seq)
            cycles, ticks, freed = cycles + 1, ticks + count, freed + size
        return Evicted(cycles, ticks), freed

    def oldest(self) -> tuple[int, bytes] | None:
        """The oldest waiting cycle not yet written, (seq, encoded body), now marked as being
        written."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, body FROM cycles ORDER BY seq LIMIT ?", (len(self._done) + 1,)
            ).fetchall()
            row = next((r for r in rows if r[0] not in self._done), None)
            self._in_flight = None if row is None else int(row[0])
        return None if row is None else (int(row[0]), bytes(row[1]))

    def remove(self, seq: int) -> None:
        """Forget a cycle whose transaction has committed. Should the file refuse the delete
        (one of SPOOL_ERRORS), the cycle is still skipped by `oldest` and deleted with the
        next one."""
        self._done.add(seq)
        done = sorted(self._done)
        size = 0
        with self._transaction() as db:
            for each in done:
                size += self._scalar("SELECT length(body) FROM cycles WHERE seq = ?", each)
                db.execute("DELETE FROM cycles WHERE seq = ?", (each,))
            self._in_flight = None
        self._done.difference_update(done)
        self._bytes -= size

    def set_aside(self, seq: int, error: str, traceback: str) -> None:
        """Move a cycle the database refused out of the way of the ones behind it."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO set_aside (seq, at, ticks, body, set_aside_at, error, traceback)"
                " SELECT seq, at, ticks, body, ?, ?, ? FROM cycles WHERE seq = ?",
                (time.time(), error, traceback, seq),
            )
            db.execute("DELETE FROM cycles WHERE seq = ?", (seq,))
            self._in_flight = None

    def unrecorded(self) -> list[SetAside]:
        """Cycles set aside that the database's set_aside_cycles does not hold yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, at, ticks, body, set_aside_at, error, traceback FROM set_aside"
                " WHERE NOT recorded ORDER BY seq"
            ).fetchall()
        return [
            SetAside(
                seq,
                datetime.fromtimestamp(at, UTC),
                ticks,
                bytes(body),
                datetime.fromtimestamp(set_aside_at, UTC),
                error,
                traceback,
            )
            for seq, at, ticks, body, set_aside_at, error, traceback in rows
        ]

    def mark_recorded(self, seq: int) -> None:
        """Note that set_aside_cycles holds this cycle."""
        with self._transaction() as db:
            db.execute("UPDATE set_aside SET recorded = 1 WHERE seq = ?", (seq,))

    def waiting(self) -> tuple[int, int]:
        """How many cycles, and ticks, wait to be written."""
        with self._lock:
            row = self._db.execute("SELECT count(*), coalesce(sum(ticks), 0) FROM cycles")
            cycles, ticks = row.fetchone()
        return int(cycles), int(ticks)

    def set_aside_count(self) -> int:
        """How many cycles are set aside."""
        with self._lock:
            return self._scalar("SELECT count(*) FROM set_aside")

    @property
    def bytes(self) -> int:
        """Encoded bytes held, waiting and set aside (`max_bytes` bounds the pages they take)."""
        return self._bytes
