"""The long-running collector: APScheduler decides when, `run_cycle` does the work."""

import asyncio
import logging
import signal
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from psycopg_pool import AsyncConnectionPool

from collector.cycle import cycle_instant, describe, run_cycle
from collector.gaps import fill_gap
from collector.maintenance import Maintenance
from collector.sources import PriceSource
from collector.sources.simulated import SimulatedSource
from collector.store import Store
from collector.writer import QUERIES
from datatracker.settings import Settings
from datatracker.storage import detect_storage_mode

log = logging.getLogger("collector")

# How long a stop waits for the cycle under way to finish its write.
STOP_GRACE_SECONDS = 10.0


async def resume_walk(source: PriceSource, pool: AsyncConnectionPool) -> None:
    """Let a simulated walk continue from the stored prices rather than jump back."""
    if isinstance(source, SimulatedSource):
        async with pool.connection() as conn:
            rows = await (await conn.execute(QUERIES["latest_prices"])).fetchall()
        source.resume({(exchange, symbol): price for exchange, symbol, price in rows})


async def start_maintenance(settings: Settings, pool: AsyncConnectionPool) -> Maintenance:
    """Detect the storage mode, say which it is, and return its upkeep."""
    async with pool.connection() as conn:
        mode = await detect_storage_mode(conn)
    if mode == "timescale":
        log.info("storage mode: timescale (TimescaleDB policies keep candles and retention)")
    else:
        log.info("storage mode: apache (the collector rolls up candles and drops old chunks)")
    return Maintenance(settings, pool, mode)


class Collector:
    """Runs a cycle at every multiple of the interval, never two at once."""

    def __init__(
        self,
        settings: Settings,
        source: PriceSource,
        pool: AsyncConnectionPool,
        maintenance: Maintenance | None = None,
    ):
        self._settings = settings
        self._source = source
        self._pool = pool
        self._maintenance = maintenance
        self._current: asyncio.Task[None] | None = None
        self._store = Store(pool, max_backlog_ticks=settings.backlog_max_ticks)

    async def collect(self) -> None:
        """The scheduled job: one cycle for the instant it was scheduled at."""
        self._current = asyncio.current_task()
        at = cycle_instant(datetime.now(UTC), self._settings.collect_interval_seconds)
        try:
            report = await run_cycle(
                self._source,
                self._store,
                at,
                timeout_seconds=self._settings.exchange_timeout_seconds,
            )
        except Exception as error:
            log.error("cycle %s not written: %s", at.isoformat(), describe(error))
            return
        if report.stored and self._maintenance is not None:
            # Two steps, each logged on failure: a ranking is still worth refreshing when
            # the candles could not be rolled up.
            try:
                await self._maintenance.update_candles(self._store.written_since or at, at)
            except Exception as error:
                log.error("candles of cycle %s not rolled up: %s", at.isoformat(), describe(error))
            try:
                await self._maintenance.refresh_rankings()
            except Exception as error:
                log.error("ranking of cycle %s not refreshed: %s", at.isoformat(), describe(error))

    async def drop_expired_chunks(self) -> None:
        """The scheduled retention job of Apache mode; a failure is logged and retried next time."""
        if self._maintenance is None:
            return
        try:
            await self._maintenance.drop_expired_chunks()
        except Exception as error:
            log.error("retention failed: %s", describe(error))

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
        if self._maintenance is not None and self._maintenance.active:
            every = self._settings.retention_check_seconds
            scheduler.add_job(
                self.drop_expired_chunks,
                IntervalTrigger(seconds=every, timezone=UTC),
                id="retention",
                next_run_time=datetime.now(UTC),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, every // 2),
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
    maintenance = await start_maintenance(settings, pool)
    await maintenance.catch_up()
    collector = Collector(settings, source, pool, maintenance)
    scheduler = AsyncIOScheduler(timezone=UTC)
    collector.schedule(scheduler)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    scheduler.start()
    # Alongside the cycles: filling hours of candles exchange by exchange can take minutes.
    gap = asyncio.create_task(fill_gap_and_roll_up(settings, source, pool, maintenance))
    await stop.wait()
    log.info("stopping")
    scheduler.shutdown(wait=False)
    gap.cancel()
    await collector.finish_current_cycle()


async def fill_gap_and_roll_up(
    settings: Settings, source: PriceSource, pool: AsyncConnectionPool, maintenance: Maintenance
) -> None:
    """Fill the gap the downtime left, then bring the candles up to date with it."""
    now = cycle_instant(datetime.now(UTC), settings.collect_interval_seconds)
    try:
        report = await fill_gap(
            source,
            pool,
            now,
            interval_seconds=settings.collect_interval_seconds,
            max_hours=settings.gap_fill_max_hours,
        )
        if report is not None and report.written:
            await maintenance.after_cycles(report.start, now)
    except Exception as error:
        log.error("gap not filled: %s", describe(error))
