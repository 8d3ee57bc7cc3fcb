"""Storage upkeep the database cannot do itself in Apache mode: candle rollups and retention.

In timescale mode TimescaleDB's policies do both, and the collector's candle and retention
steps do nothing: the collector may not own the candle aggregates (migration 0006), so history
written behind the last materialised bucket (a backfill, a filled gap, cycles kept through an
outage) is materialised by the refresh policies at their next run. `candle_updates` still
names the refreshes, for the aggregates' owner (tests, benchmarks, an operator). The stored
ranking needs `refresh_rankings` after every write in both modes.
"""

import logging
import time
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from collector.writer import QUERIES
from datatracker.instants import floor_to
from datatracker.settings import Settings
from datatracker.storage import StorageMode

log = logging.getLogger("collector.maintenance")

CANDLE_WIDTHS = {
    "refresh_candles_5m": timedelta(minutes=5),
    "refresh_candles_1h": timedelta(hours=1),
}
ROLL_UPS = {
    "roll_up_candles_5m": timedelta(minutes=5),
    "roll_up_candles_1h": timedelta(hours=1),
}
# Where an unbounded apache-mode roll-up stops: after any tick.
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


def whole_buckets(since: datetime, until: datetime, width: timedelta) -> tuple[datetime, datetime]:
    """The window of whole buckets of `width` from the one holding `since` to the last that
    ended by `until` (empty when start == end)."""
    # Buckets of 5 minutes and 1 hour fall on the same boundaries from the Unix epoch
    # (floor_to) as from TimescaleDB's origin (a Monday, midnight).
    start, end = floor_to(since, width), floor_to(until, width)
    return start, max(start, end)


def bucket_end(until: datetime, width: timedelta) -> datetime:
    """The end of the last bucket of `width` holding a moment before `until`."""
    return floor_to(until - timedelta(microseconds=1), width) + width


def candle_updates(
    mode: StorageMode, since: datetime, now: datetime, until: datetime | None = None
) -> list[tuple[str, dict[str, datetime]]]:
    """The statements (query name, parameters) that bring the candles up to date with ticks
    written from `since` on (and before `until`, when given): a roll-up of every bucket
    holding them (apache mode), or a refresh of the whole buckets among them up to `now`
    (timescale mode; the newest, unfinished bucket is aggregated in real time)."""
    updates = []
    if mode == "apache":
        for query, width in ROLL_UPS.items():
            end = FAR_FUTURE if until is None else bucket_end(until, width)
            updates.append((query, {"since": since, "until": end}))
        return updates
    for query, width in CANDLE_WIDTHS.items():
        start, end = whole_buckets(since, now if until is None else min(now, until), width)
        if start < end:
            updates.append((query, {"start": start, "end": end}))
    return updates


class Maintenance:
    """Keeps candles and retention in Apache mode (a no-op in timescale mode), and the stored
    ranking in both modes."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool, mode: StorageMode):
        self._settings = settings
        self._pool = pool
        self.mode = mode
        # The oldest instant whose candles an update failed to bring up to date, if any.
        self._candles_behind: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the collector maintains storage (Apache mode)."""
        return self.mode == "apache"

    async def roll_up(self, since: datetime) -> None:
        """Recompute the candles of every bucket from the one holding `since` on."""
        if not self.active:
            return
        await self._update_candles(since)

    async def catch_up(self) -> None:
        """Roll up what was written since the newest candle, e.g. while the collector was down."""
        if not self.active:
            return
        async with self._pool.connection() as conn:
            row = await (await conn.execute(QUERIES["roll_up_start"])).fetchone()
        if row is not None and row[0] is not None:
            await self.roll_up(row[0])

    async def drop_expired_chunks(self) -> int:
        """Drop the chunks past the retention horizons the database stores; return how many."""
        if not self.active:
            return 0
        async with self._pool.connection() as conn:
            row = await (await conn.execute(QUERIES["apply_retention"])).fetchone()
        dropped = int(row[0]) if row else 0
        log.info("retention: %d expired chunks dropped", dropped)
        return dropped

    async def refresh_history(self, since: datetime) -> None:
        """Roll up the candles of ticks written from `since` on (apache mode; in timescale
        mode the refresh policies materialise them)."""
        await self._update_candles(since)

    async def refresh_span(self, since: datetime, until: datetime) -> None:
        """Roll up the candles of every bucket holding ticks written from `since` to before
        `until` (apache mode; in timescale mode the refresh policies materialise them)."""
        await self._update_candles(since, until)

    async def _update_candles(self, since: datetime, until: datetime | None = None) -> None:
        if not self.active:
            return
        async with self._pool.connection() as conn:
            for query, params in candle_updates(self.mode, since, datetime.now(UTC), until):
                await conn.execute(QUERIES[query], params)

    async def update_candles(self, since: datetime, at: datetime) -> None:
        """Bring the candles up to date once cycles from `since` to `at` are stored.

        A single cycle (`since == at`) is rolled up alone; a backlog written after an
        outage goes through `refresh_history`, which brings older buckets up to date (apache
        mode). When an update fails, the next one reaches back to what it left behind.
        """
        if self._candles_behind is not None:
            since = min(since, self._candles_behind)
        self._candles_behind = since
        if since < at:
            await self.refresh_history(since)
        else:
            await self.roll_up(at)
        self._candles_behind = None

    async def after_cycles(self, since: datetime, at: datetime) -> None:
        """Upkeep once cycles from `since` to `at` are stored: candles, then the ranking."""
        await self.update_candles(since, at)
        await self.refresh_rankings()

    async def refresh_rankings(self) -> int:
        """Replace the stored ranking with the one over the 24 hours up to now; return how many
        pairs it ranks. Call it once the cycle's ticks (and in Apache mode candles) are stored."""
        started = time.perf_counter()
        async with self._pool.connection() as conn:
            row = await (await conn.execute(QUERIES["refresh_rankings"])).fetchone()
        ranked = int(row[0]) if row else 0
        log.debug("rankings: %d pairs in %.3f s", ranked, time.perf_counter() - started)
        return ranked
