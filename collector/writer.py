"""Writes ticks to TimescaleDB: set-based statements, never one per tick."""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation

from collector.ticks import Tick
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
    `copy=False` (for servers without COPY FROM STDIN) a plain insert. When some ticks
    are already stored (a cycle written twice, a backfill over stored history, a second
    collector) that statement fails whole and the batch is written again skipping the
    stored ticks, which costs about twice as much.
    """

    def __init__(self, *, copy: bool = True) -> None:
        self._copy = copy
        self._ids: dict[MarketKey, int] = {}
        self._exchange_of: dict[int, str] = {}
        self._touched_at: datetime | None = None

    async def write(self, conn: AsyncConnection, ticks: Sequence[Tick]) -> dict[str, int]:
        """Store the ticks not stored yet; return how many were new, per exchange."""
        if not ticks:
            return {}
        await self._register_markets(conn, ticks)
        ids = self._ids
        rows = [(t.time, ids[t.exchange, t.symbol], t.price, t.exchange_time) for t in ticks]
        try:
            if self._copy:
                await copy_rows(conn, rows)
            else:
                await conn.execute(QUERIES["insert_ticks"], as_columns(rows), binary=True)
            written = Counter(t.exchange for t in ticks)
        except UniqueViolation:
            cursor = await conn.execute(QUERIES["insert_new_ticks"], as_columns(rows), binary=True)
            written = Counter(self._exchange_of[row[0]] for row in await cursor.fetchall())
        await self._touch_markets(conn, [row[1] for row in rows], max(t.time for t in ticks))
        return dict(written)

    async def _register_markets(self, conn: AsyncConnection, ticks: Sequence[Tick]) -> None:
        """Register the markets this writer has no id for yet, in one statement."""
        new: dict[MarketKey, list[Tick]] = {}
        for tick in ticks:
            key = (tick.exchange, tick.symbol)
            if key not in self._ids:
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
            self._ids[(exchange, symbol)] = market_id
            self._exchange_of[market_id] = exchange

    async def _touch_markets(self, conn: AsyncConnection, ids: list[int], seen: datetime) -> None:
        """Move last_seen forward, at most once per LAST_SEEN_PRECISION."""
        if self._touched_at is None:
            self._touched_at = seen  # registration just set last_seen
        elif seen - self._touched_at >= LAST_SEEN_PRECISION:
            await conn.execute(QUERIES["touch_markets"], {"ids": ids, "seen": seen})
            self._touched_at = seen


async def write_ticks(
    conn: AsyncConnection, ticks: Sequence[Tick], *, copy: bool = True
) -> dict[str, int]:
    """Store the ticks not stored yet with a fresh writer; return new ticks per exchange."""
    return await TickWriter(copy=copy).write(conn, ticks)


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
