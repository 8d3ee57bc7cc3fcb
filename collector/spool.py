"""The spool: cycles kept on local disk (SQLite) until their transaction commits.

A cycle is on disk before it counts as kept, and deleted only once the database has
committed it, so cycles survive an outage, a SIGKILL and a restart. The spool is bounded:
past `max_bytes` of encoded cycles the oldest go first. A cycle the database refuses for
a reason other than a lost connection is moved to `set_aside`, with its error and
traceback, and stays there (it counts against the bound too).

Every method is a short blocking SQLite call: the async side runs them in a thread
(`asyncio.to_thread`), never on the event loop, because an fsync can take milliseconds
to seconds on a busy disk. One connection is shared, so a lock serialises the calls.
"""

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
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / SPOOL_FILE
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # Autocommit (isolation_level=None): transactions are explicit, in `_transaction`.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # WAL with synchronous=FULL: every commit is fsynced before it returns, so a cycle
        # reported as kept survives a power cut as well as a SIGKILL. NORMAL would survive
        # a SIGKILL only; at one commit or two per cycle the fsync costs nothing noticeable.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._bytes = self._scalar(
            "SELECT (SELECT coalesce(sum(length(body)), 0) FROM cycles)"
            " + (SELECT coalesce(sum(length(body)), 0) FROM set_aside)"
        )
        self._in_flight: int | None = None

    def close(self) -> None:
        """Close the file (a checkpoint folds the WAL back into it)."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _scalar(self, query: str, *params: object) -> int:
        row = self._db.execute(query, params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def put(self, report: CycleReport) -> Evicted:
        """Keep a cycle, on disk once this returns; drop the oldest cycles past the bound."""
        body = encode_cycle(report)
        with self._transaction() as db:
            evicted = self._evict(db, len(body))
            db.execute(
                "INSERT INTO cycles (at, ticks, body) VALUES (?, ?, ?)",
                (report.at.timestamp(), report.fetched, body),
            )
            self._bytes += len(body)
        return evicted

    def _evict(self, db: sqlite3.Connection, room: int) -> Evicted:
        """Delete the oldest cycles (waiting or set aside) until `room` more bytes fit; the
        cycle being written is spared, and the newest cycle always fits."""
        cycles = ticks = 0
        while self._bytes + room > self.max_bytes:
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
            self._bytes -= size
            cycles, ticks = cycles + 1, ticks + count
        return Evicted(cycles, ticks)

    def oldest(self) -> tuple[int, bytes] | None:
        """The oldest waiting cycle, (seq, encoded body), now marked as being written."""
        with self._lock:
            row = self._db.execute("SELECT seq, body FROM cycles ORDER BY seq LIMIT 1").fetchone()
            self._in_flight = None if row is None else int(row[0])
        return None if row is None else (int(row[0]), bytes(row[1]))

    def remove(self, seq: int) -> None:
        """Forget a cycle whose transaction has committed."""
        with self._transaction() as db:
            size = self._scalar("SELECT length(body) FROM cycles WHERE seq = ?", seq)
            db.execute("DELETE FROM cycles WHERE seq = ?", (seq,))
            self._in_flight = None
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
        """Encoded bytes held, waiting and set aside: what `max_bytes` bounds."""
        return self._bytes
