"""The long-running collector: APScheduler decides when, `run_cycle` does the work."""

import asyncio
import logging
import signal
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from psycopg_pool import AsyncConnectionPool

from collector.cycle import cycle_instant, describe, run_cycle
from collector.sources import PriceSource
from collector.sources.simulated import SimulatedSource
from collector.writer import QUERIES, TickWriter
from datatracker.settings import Settings

log = logging.getLogger("collector")

# How long a stop waits for the cycle under way to finish its write.
STOP_GRACE_SECONDS = 10.0


async def resume_walk(source: PriceSource, pool: AsyncConnectionPool) -> None:
    """Let a simulated walk continue from the stored prices rather than jump back."""
    if isinstance(source, SimulatedSource):
        async with pool.connection() as conn:
            rows = await (await conn.execute(QUERIES["latest_prices"])).fetchall()
        source.resume({(exchange, symbol): price for exchange, symbol, price in rows})


class Collector:
    """Runs a cycle at every multiple of the interval, never two at once."""

    def __init__(self, settings: Settings, source: PriceSource, pool: AsyncConnectionPool):
        self._settings = settings
        self._source = source
        self._pool = pool
        self._current: asyncio.Task[None] | None = None
        self._writer = TickWriter()

    async def collect(self) -> None:
        """The scheduled job: one cycle for the instant it was scheduled at."""
        self._current = asyncio.current_task()
        at = cycle_instant(datetime.now(UTC), self._settings.collect_interval_seconds)
        try:
            await run_cycle(
                self._source,
                self._pool,
                at,
                timeout_seconds=self._settings.exchange_timeout_seconds,
                writer=self._writer,
            )
        except Exception as error:
            log.error("cycle %s not written: %s", at.isoformat(), describe(error))

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        """Add the job: aligned to the interval, one instance, missed runs coalesced."""
        interval = self._settings.collect_interval_seconds
        first = cycle_instant(datetime.now(UTC), interval) + timedelta(seconds=interval)
        scheduler.add_job(
            self.collect,
            IntervalTrigger(seconds=interval, start_date=first, timezone=UTC),
            id="collect",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, interval // 2),
        )
        log.info(
            "collecting %s from %s every %d s, first cycle at %s",
            self._settings.price_source,
            ", ".join(self._source.exchanges),
            interval,
            first.strftime("%H:%M:%SZ"),
        )

    async def finish_current_cycle(self) -> None:
        """Give a cycle under way a bounded time to finish, then cancel it."""
        task = self._current
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_SECONDS)
        except TimeoutError:
            log.warning("cycle under way abandoned after %.0f s", STOP_GRACE_SECONDS)
            task.cancel()


async def serve(settings: Settings, source: PriceSource, pool: AsyncConnectionPool) -> None:
    """Collect until SIGTERM or SIGINT."""
    await resume_walk(source, pool)
    collector = Collector(settings, source, pool)
    scheduler = AsyncIOScheduler(timezone=UTC)
    collector.schedule(scheduler)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    scheduler.start()
    await stop.wait()
    log.info("stopping")
    scheduler.shutdown(wait=False)
    await collector.finish_current_cycle()
