"""Writes ticks to TimescaleDB: set-based statements, never one per tick."""

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation

from collector.ticks import Tick
from datatracker.instants import micros_of
from datatracker.queries import load_queries

QUERIES = load_queries(Path(__file__).with_name("queries.sql"))

# How stale markets.last_seen may get: refreshing every row each cycle would cost
# as much as writing the ticks.
LAST_SEEN_PRECISION = timedelta(hours=1)

MarketKey = tuple[str, str]
# A row of ticks as written: (time, market_id, price, exchange_time).
TickRow = tuple[datetime, int, float, datetime | None]


class TickWriter:
    """Writes batches of ticks, remembering market ids so a cycle is one statement.

    The common case (a new cycle, nothing stored yet) is a binary COPY, or with
    `copy=False` (for servers without COPY FROM STDIN) a plain insert. Writers of the same
    first instant take turns (an advisory lock), and when some ticks of the batch's
    exchanges are stored in its span already (a cycle written twice, a second collector)
    the batch is inserted skipping the stored ticks, without an error. Should a writer that
    does not take turns store some meanwhile (a backfill), the COPY fails whole and the
    batch is written again that way, which costs about twice as much.

    Call `write` inside `transaction(conn)`: market ids and the last touch learnt in a
    transaction are remembered only once it commits, so a rolled-back registration never
    leaves an id for a market row that does not exist.
    """

    def __init__(self, *, copy: bool = True) -> None:
        self._copy = copy
        self._ids: dict[MarketKey, int] = {}
        self._touched_at: datetime | None = None
        # Learnt in the open transaction; merged into the above when it commits.
        self._new_ids: dict[MarketKey, int] = {}
        self._new_touch: datetime | None = None

    @asynccontextmanager
    async def transaction(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """A transaction (a savepoint inside one already open) whose market ids are kept
        only if it commits."""
        self._new_ids, self._new_touch = {}, None
        try:
            async with conn.transaction():
                yield
        finally:
            new_ids, new_touch = self._new_ids, self._new_touch
            self._new_ids, self._new_touch = {}, None
        # Reached only once the transaction has committed (or its savepoint was released).
        self._ids.update(new_ids)
        self._touched_at = new_touch or self._touched_at

    async def write(self, conn: AsyncConnection, ticks: Sequence[Tick]) -> dict[str, int]:
        """Store the ticks not stored yet; return how many were new, per exchange."""
        if not ticks:
            return {}
        await self._register_markets(conn, ticks)
        ids = self._ids | self._new_ids
        rows = [(t.time, ids[t.exchange, t.symbol], t.price, t.exchange_time) for t in ticks]
        await conn.execute(QUERIES["name_span"], {"span": span_of(ticks)})
        if await stored_in_span(conn, ticks):
            written = await self._insert_new(conn, rows, ids)
        else:
            try:
                # A savepoint: a repeat aborts only the COPY, not the cycle's transaction.
                async with conn.transaction():
                    if self._copy:
                        await copy_rows(conn, rows)
                    else:
                        await conn.execute(QUERIES["insert_ticks"], as_columns(rows), binary=True)
                written = Counter(t.exchange for t in ticks)
            except UniqueViolation:
                written = await self._insert_new(conn, rows, ids)
        await self._touch_markets(conn, [row[1] for row in rows], max(t.time for t in ticks))
        return dict(written)

    @staticmethod
    async def _insert_new(
        conn: AsyncConnection, rows: Sequence[TickRow], ids: dict[MarketKey, int]
    ) -> Counter[str]:
        """Insert the rows not stored yet; how many were new, per exchange."""
        cursor = await conn.execute(QUERIES["insert_new_ticks"], as_columns(rows), binary=True)
        exchange_of = {market_id: key[0] for key, market_id in ids.items()}
        return Counter(exchange_of[row[0]] for row in await cursor.fetchall())

    async def _register_markets(self, conn: AsyncConnection, ticks: Sequence[Tick]) -> None:
        """Register the markets this writer has no id for yet, in one statement."""
        new: dict[MarketKey, list[Tick]] = {}
        for tick in ticks:
            key = (tick.exchange, tick.symbol)
            if key not in self._ids and key not in self._new_ids:
                new.setdefault(key, []).append(tick)
        if not new:
            return
        markets = {
            "exchange": [exchange for exchange, _ in new],
            "symbol": [symbol for _, symbol in new],
            "base": [seen[0].base for seen in new.values()],
            "quote": [seen[0].quote for seen in new.values()],
            "first_seen": [min(t.time for t in seen) for seen in new.values()],
            "last_seen": [max(t.time for t in seen) for seen in new.values()],
        }
        cursor = await conn.execute(QUERIES["register_markets"], markets, binary=True)
        for market_id, exchange, symbol in await cursor.fetchall():
            self._new_ids[(exchange, symbol)] = market_id

    async def _touch_markets(self, conn: AsyncConnection, ids: list[int], seen: datetime) -> None:
        """Move last_seen forward, at most once per LAST_SEEN_PRECISION."""
        touched_at = self._new_touch or self._touched_at
        if touched_at is None:
            self._new_touch = seen  # registration just set last_seen
        elif seen - touched_at >= LAST_SEEN_PRECISION:
            await conn.execute(QUERIES["touch_markets"], {"ids": ids, "seen": seen})
            self._new_touch = seen


async def write_ticks(
    conn: AsyncConnection, ticks: Sequence[Tick], *, copy: bool = True
) -> dict[str, int]:
    """Store the ticks not stored yet with a fresh writer, in one transaction; return new
    ticks per exchange."""
    writer = TickWriter(copy=copy)
    async with writer.transaction(conn):
        return await writer.write(conn, ticks)


async def stored_in_span(conn: AsyncConnection, ticks: Sequence[Tick]) -> bool:
    """Wait for the turn of the ticks' first instant, then tell whether any tick of their
    exchanges is stored in their span already."""
    first, last = min(t.time for t in ticks), max(t.time for t in ticks)
    await conn.execute(QUERIES["lock_instant"], {"instant": first})
    params = {"first": first, "last": last, "exchanges": sorted({t.exchange for t in ticks})}
    cursor = await conn.execute(QUERIES["stored_in_span"], params)
    row = await cursor.fetchone()
    return bool(row and row[0])


async def copy_rows(conn: AsyncConnection, rows: Sequence[TickRow]) -> None:
    """COPY the rows into ticks, in one statement."""
    async with conn.cursor().copy(QUERIES["copy_ticks"]) as copy:
        copy.set_types(["timestamptz", "integer", "float8", "timestamptz"])
        for row in rows:
            await copy.write_row(row)


def as_columns(rows: Sequence[TickRow]) -> dict[str, Sequence[float | None]]:
    """The rows as the parameters of insert_ticks and insert_new_ticks: one list per column,
    times as Unix epoch seconds."""
    return {
        "time": [time.timestamp() for time, _, _, _ in rows],
        "market_id": [market_id for _, market_id, _, _ in rows],
        "price": [price for _, _, price, _ in rows],
        "exchange_time": [at.timestamp() if at else None for _, _, _, at in rows],
    }


def span_of(ticks: Sequence[Tick]) -> str:
    """'<first µs>/<last µs>' since the Unix epoch of the ticks' instants."""
    first, last = min(t.time for t in ticks), max(t.time for t in ticks)
    return f"{micros_of(first)}/{micros_of(last)}"
