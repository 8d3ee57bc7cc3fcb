"""Fills the hole a stopped collector (or database) left, from the source's history."""

import logging
from datetime import datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from collector.backfill import BackfillReport, backfill
from collector.sources import PriceSource
from collector.writer import QUERIES

log = logging.getLogger("collector")


async def newest_tick(pool: AsyncConnectionPool, before: datetime) -> datetime | None:
    """The time of the newest stored tick before `before`, or None on an empty database."""
    async with pool.connection() as conn:
        cursor = await conn.execute(QUERIES["newest_tick"], {"before": before})
        row = await cursor.fetchone()
    return row[0] if row else None


async def fill_gap(
    source: PriceSource,
    pool: AsyncConnectionPool,
    now: datetime,
    *,
    interval_seconds: int,
    max_hours: float,
) -> BackfillReport | None:
    """Backfill from the newest tick stored before `now` to `now`, at most `max_hours` back;
    None if there is no gap.

    An empty database is left alone: `python -m collector backfill` is for a first start.
    """
    if max_hours <= 0:
        return None
    newest = await newest_tick(pool, now)
    if newest is None or now - newest <= timedelta(seconds=interval_seconds):
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


async def fill_exchange_gap(
    source: PriceSource,
    pool: AsyncConnectionPool,
    exchange: str,
    last_fetched: datetime,
    back: datetime,
    *,
    max_hours: float,
) -> BackfillReport:
    """Backfill one exchange that failed from after `last_fetched` until it came `back`
    (exclusive: that cycle has its own tick), at most `max_hours` of it."""
    end = back - timedelta(microseconds=1)
    start = max(last_fetched, end - timedelta(hours=max_hours))
    log.info(
        "%s is back: filling its gap from %s to %s from its history",
        exchange,
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        back.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return await backfill(source, pool, end, (end - start) / timedelta(hours=1), [exchange])
