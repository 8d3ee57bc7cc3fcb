"""Fills the hole a stopped collector (or database) left, from the source's history."""

import logging
from datetime import datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from collector.backfill import BackfillReport, backfill
from collector.sources import PriceSource
from collector.writer import QUERIES

log = logging.getLogger("collector")


async def newest_tick(pool: AsyncConnectionPool) -> datetime | None:
    """The time of the newest stored tick, or None on an empty database."""
    async with pool.connection() as conn:
        row = await (await conn.execute(QUERIES["newest_tick"])).fetchone()
    return row[0] if row else None


async def fill_gap(
    source: PriceSource,
    pool: AsyncConnectionPool,
    now: datetime,
    *,
    interval_seconds: int,
    max_hours: float,
) -> BackfillReport | None:
    """Backfill from the newest stored tick to `now`, at most `max_hours` back; None if no gap.

    An empty database is left alone: `python -m collector backfill` is for a first start.
    """
    newest = await newest_tick(pool)
    if newest is None or max_hours <= 0 or now - newest <= timedelta(seconds=interval_seconds):
        return None
    start = max(newest, now - timedelta(hours=max_hours))
    if start > newest:
        log.warning(
            "the gap since %s is longer than GAP_FILL_MAX_HOURS=%g: filling only from %s",
            newest.strftime("%Y-%m-%dT%H:%M:%SZ"),
            max_hours,
            start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    log.info(
        "filling the gap from %s to %s from the source's history",
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return await backfill(source, pool, now, (now - start) / timedelta(hours=1))
