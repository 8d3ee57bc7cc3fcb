"""Writes history in bulk: a grid of ticks (every market at every minute of a span) as one
binary COPY, built column by column rather than row by row.

A grid is written market by market (each market's minutes in a row): the primary key's index
(market_id, time) then grows in runs instead of at one place per market per minute, which
TimescaleDB's COPY takes in about 60 % of the time of the same rows minute by minute.
Minutes already stored, whole or in part, are never copied: the missing ticks of a minute
in part stored are inserted skipping the stored ones, and a minute whole stored is skipped.
"""

import struct
import sys
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation

from collector.sources import TickGrid
from collector.writer import LAST_SEEN_PRECISION, QUERIES, MarketKey
from datatracker.instants import micros_of

# PostgreSQL's binary COPY: a signature, flags and header extension length, then per row a
# field count and each field as its length and bytes, then -1 as the trailer.
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
# A row of ticks (time, market_id, price, exchange_time NULL): 38 bytes, of which these vary.
ROW = struct.pack(">hiqiiidi", 4, 8, 0, 4, 0, 8, 0.0, -1)
TIME_AT, MARKET_AT, PRICE_AT = 6, 18, 26
POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class GridWriter:
    """Writes grids of ticks, registering their markets with the first one and remembering
    their ids (only once the transaction that registered them has committed)."""

    def __init__(self) -> None:
        self._ids: dict[MarketKey, int] = {}
        self._touched_at: datetime | None = None

    async def write(self, conn: AsyncConnection, grid: TickGrid) -> int:
        """Store the grid's ticks not stored yet, in one transaction; return how many were new."""
        async with conn.transaction():
            known = self._known_ids(grid)
            ids = known or await register_markets(conn, grid)
            span = f"{micros_of(grid.times[0])}/{micros_of(grid.times[-1])}"
            await conn.execute(QUERIES["name_span"], {"span": span})
            stored = await stored_per_minute(conn, grid, ids)
            fresh = [i for i, at in enumerate(grid.times) if at not in stored]
            partly = [i for i, at in enumerate(grid.times) if 0 < stored.get(at, 0) < len(ids)]
            written = await copy_or_insert(conn, part_of(grid, fresh), ids) if fresh else 0
            if partly:
                written += await insert_missing(conn, part_of(grid, partly), ids)
            # After the ticks, as a cycle does: markets are locked only for the commit's time.
            touched_at = grid.times[-1]  # registering set last_seen
            if known is not None:
                touched_at = await self._touch_markets(conn, ids, grid.times[-1])
        # Reached only once the transaction has committed.
        self._ids.update(zip(((m.exchange, m.symbol) for m in grid.markets), ids, strict=True))
        self._touched_at = touched_at
        return written

    def _known_ids(self, grid: TickGrid) -> list[int] | None:
        """The grid's market ids in column order, or None when one is not known yet."""
        ids = []
        for market in grid.markets:
            market_id = self._ids.get((market.exchange, market.symbol))
            if market_id is None:
                return None
            ids.append(market_id)
        return ids

    async def _touch_markets(
        self, conn: AsyncConnection, ids: list[int], seen: datetime
    ) -> datetime:
        """Move last_seen forward, at most once per LAST_SEEN_PRECISION; return the last touch."""
        if self._touched_at is not None and seen - self._touched_at < LAST_SEEN_PRECISION:
            return self._touched_at
        await conn.execute(QUERIES["touch_markets"], {"ids": ids, "seen": seen})
        return seen


async def register_markets(conn: AsyncConnection, grid: TickGrid) -> list[int]:
    """Register the grid's markets (or widen their first and last seen to its span), in one
    statement; return their ids in column order."""
    width = len(grid.markets)
    markets = {
        "exchange": [market.exchange for market in grid.markets],
        "symbol": [market.symbol for market in grid.markets],
        "base": [market.base for market in grid.markets],
        "quote": [market.quote for market in grid.markets],
        "first_seen": [grid.times[0]] * width,
        "last_seen": [grid.times[-1]] * width,
    }
    cursor = await conn.execute(QUERIES["register_markets"], markets, binary=True)
    registered = {(exchange, symbol): id_ for id_, exchange, symbol in await cursor.fetchall()}
    return [registered[market.exchange, market.symbol] for market in grid.markets]


async def stored_per_minute(
    conn: AsyncConnection, grid: TickGrid, ids: list[int]
) -> dict[datetime, int]:
    """How many of the grid's markets have a tick stored at each of its minutes (those with any)."""
    params = {"first": grid.times[0], "last": grid.times[-1], "ids": ids}
    cursor = await conn.execute(QUERIES["stored_per_minute"], params)
    return {at: count for at, count in await cursor.fetchall()}


async def copy_or_insert(conn: AsyncConnection, grid: TickGrid, ids: list[int]) -> int:
    """COPY the grid, none of whose ticks was stored when asked; should another writer have
    stored some since (a collector writing its cycle), insert the missing ones instead."""
    try:
        # A savepoint: a repeat aborts only the COPY.
        async with conn.transaction(), conn.cursor().copy(QUERIES["copy_ticks"]) as copy:
            await copy.write(copy_data(grid, ids))
        return len(grid)
    except UniqueViolation:
        return await insert_missing(conn, grid, ids)


async def insert_missing(conn: AsyncConnection, grid: TickGrid, ids: list[int]) -> int:
    """Insert the grid's ticks that are not stored, leaving the stored ones as they are;
    return how many were inserted."""
    count = len(grid.times)
    columns = {
        "time": [at.timestamp() for at in grid.times for _ in ids],
        "market_id": ids * count,
        "price": grid.prices.tolist(),
        "exchange_time": [None] * len(grid),
    }
    cursor = await conn.execute(QUERIES["insert_new_ticks"], columns, binary=True)
    return cursor.rowcount


def part_of(grid: TickGrid, minutes: Sequence[int]) -> TickGrid:
    """The grid's ticks at the minutes of these indexes (ascending) only."""
    if len(minutes) == len(grid.times):
        return grid
    width = len(grid.markets)
    prices: array[float] = array("d")
    for i in minutes:
        prices.extend(grid.prices[i * width : (i + 1) * width])
    return TickGrid([grid.times[i] for i in minutes], grid.markets, prices)


def copy_data(grid: TickGrid, ids: Sequence[int]) -> bytearray:
    """The grid's ticks as binary COPY data for `copy_ticks`, market by market, each market's
    minutes in order: `ids[m]` is the market id of column m."""
    count, width = len(grid.times), len(grid.markets)
    times = array("q", [(at - POSTGRES_EPOCH) // MICROSECOND for at in grid.times]) * width
    market_ids = array("i", [market_id for market_id in ids for _ in range(count)])
    prices: array[float] = array("d")
    for m in range(width):
        prices.extend(grid.prices[m::width])
    rows = len(prices)
    data = bytearray(SIGNATURE + ROW * rows + TRAILER)
    body = slice(len(SIGNATURE), len(SIGNATURE) + rows * len(ROW))
    for offset, column in ((TIME_AT, times), (MARKET_AT, market_ids), (PRICE_AT, prices)):
        if sys.byteorder == "little":
            column.byteswap()  # network byte order
        raw, size = column.tobytes(), column.itemsize
        # Each byte of the field, every row at once: a handful of copies in C per column.
        for k in range(size):
            data[body.start + offset + k : body.stop : len(ROW)] = raw[k::size]
    return data
