"""The long-running collector: APScheduler decides when, the job fetches, the writer writes.

The scheduled job (`Collector.collect`) fetches a cycle and puts it in the spool; the
writer task (`Backlog.run`) writes spooled cycles in order. Nothing the database does
can delay or skip a fetch. Upkeep (candles, ranking) follows the writer once it has
caught up; gap filling and retention run beside both.
"""

import asyncio
import logging
import signal
from collections.abc import Awaitable, Coroutine
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from psycopg_pool import AsyncConnectionPool

from collector import metrics
from collector.backfill import BackfillReport
from collector.backlog import Backlog
from collector.cycle import cycle_instant, fetch_cycle, scheduled_instant
from collector.errors import UNREACHABLE, describe, log_failure
from collector.gaps import fill_exchange_gap, fill_gap
from collector.maintenance import Maintenance
from collector.report import CycleReport
from collector.sources import PriceSource
from collector.sources.simulated import SimulatedSource
from collector.spool import Spool
from collector.store import Store
from collector.writer import QUERIES
from datatracker.settings import Settings
from datatracker.storage import detect_storage_mode

log = logging.getLogger("collector")

# The scheduler's id of the collect job.
COLLECT_JOB = "collect"
# A cycle's fetch ends within this share of the interval, so it never overlaps the next one.
FETCH_SHARE_OF_INTERVAL = 0.8


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


def fetch_budget(settings: Settings) -> float:
    """Each exchange's time within a cycle: its timeout, but never past the next instant."""
    interval = settings.collect_interval_seconds * FETCH_SHARE_OF_INTERVAL
    return min(settings.exchange_timeout_seconds, interval)


class Collector:
    """Fetches a cycle at every multiple of the interval and keeps it in the backlog; fills
    the gaps that exchange outages and downtime leave, and keeps storage up to date."""

    def __init__(
        self,
        settings: Settings,
        source: PriceSource,
        pool: AsyncConnectionPool,
        spool: Spool | None = None,
    ) -> None:
        self._settings = settings
        self._source = source
        self._pool = pool
        self.spool = spool or Spool(
            settings.spool_dir, max_bytes=int(settings.spool_max_mb * 2**20)
        )
        self.backlog = Backlog(self.spool, Store(pool), upkeep=self.upkeep)
        self._maintenance: Maintenance | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._job: asyncio.Task[None] | None = None
        self._stopping = False
        self._started_at = cycle_instant(datetime.now(UTC), settings.collect_interval_seconds)
        self._submitted_at: datetime | None = None  # the instant the job was last submitted for
        self._resuming: asyncio.Task[None] | None = None
        self._gap_filled = False
        self._last_fetched: dict[str, datetime] = {}
        self._fills: set[asyncio.Task[None]] = set()

    def resume_meanwhile(self) -> None:
        """Let a simulated walk continue from the stored prices if the database answers before
        the first cycle; the first cycle never waits for it."""
        if isinstance(self._source, SimulatedSource):
            self._resuming = asyncio.create_task(self._resume(), name="collector-resume")

    async def _resume(self) -> None:
        try:
            await resume_walk(self._source, self._pool)
        except UNREACHABLE as error:
            # INFO: the outage has its own line each way (the writer's).
            log.info("simulated prices start afresh: database unreachable (%s)", describe(error))

    def _stop_resuming(self) -> None:
        resuming, self._resuming = self._resuming, None
        if resuming is not None and not resuming.done():
            resuming.cancel()
            log.info(
                "simulated prices start afresh: the database did not answer before the first cycle"
            )

    async def collect(self, at: datetime) -> None:
        """Fetch the cycle of instant `at` and spool it."""
        self._job = asyncio.current_task()
        try:
            await self._collect(at)
        finally:
            self._job = None

    def _submitted(self, event: JobSubmissionEvent) -> None:
        """Note the instant the scheduler submitted the collect job for. Called as it submits
        the job, before the job's coroutine starts (events are dispatched in the same call of
        the event loop that creates the job's task)."""
        if event.job_id == COLLECT_JOB:
            scheduled = event.scheduled_run_times[-1]
            self._submitted_at = scheduled_instant(
                scheduled, self._settings.collect_interval_seconds
            )

    async def _scheduled_collect(self) -> None:
        """The scheduled job: the cycle of the instant the scheduler fired it for, whatever the
        clock says as it runs."""
        at, self._submitted_at = self._submitted_at, None
        if at is None:  # not submitted by the scheduler (never expected): the clock's instant
            at = cycle_instant(datetime.now(UTC), self._settings.collect_interval_seconds)
        await self.collect(at)

    async def _collect(self, at: datetime) -> None:
        self._stop_resuming()
        try:
            report = await fetch_cycle(
                self._source, at, timeout_seconds=fetch_budget(self._settings)
            )
            metrics.fetched(report)
            await self.backlog.keep(report)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            metrics.ended("abandoned")
            log.warning("cycle %s abandoned: stopping", at.strftime("%Y-%m-%dT%H:%M:%SZ"))
            return
        except Exception:
            metrics.ended("lost")
            log.exception("cycle %s lost: not kept in the spool", at.strftime("%Y-%m-%dT%H:%M:%SZ"))
            return
        self._follow_exchanges(report)

    def _follow_exchanges(self, report: CycleReport) -> None:
        """Fill an exchange's gap once it answers again after failed cycles."""
        interval = timedelta(seconds=self._settings.collect_interval_seconds)
        for outcome in report.outcomes:
            if outcome.error:
                continue
            last = self._last_fetched.get(outcome.exchange)
            self._last_fetched[outcome.exchange] = report.at
            if last is not None and report.at - last > interval:
                self._in_background(self._fill_exchange_gap(outcome.exchange, last, report.at))

    async def wait_for_fills(self) -> None:
        """Return once the gap fills under way are done."""
        while self._fills:
            await asyncio.wait(list(self._fills))

    def _in_background(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(work)
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def _fill_exchange_gap(self, exchange: str, last: datetime, back: datetime) -> None:
        max_hours = self._settings.gap_fill_max_hours
        if max_hours <= 0:
            return
        try:
            report = await fill_exchange_gap(
                self._source, self._pool, exchange, last, back, max_hours=max_hours
            )
        except UNREACHABLE as error:
            log.warning("%s: gap not filled, database unreachable (%s)", exchange, describe(error))
            return
        except Exception as error:
            log_failure(log, f"{exchange}: gap not filled", error)
            return
        await self._after_fill(report, back)

    async def upkeep(self, since: datetime, at: datetime) -> None:
        """After the writer caught up with cycles `since`..`at`: candles, ranking; the first
        time also the storage mode, the catch-up roll-up and the gap the downtime left."""
        try:
            maintenance = await self._ensure_maintenance()
        except UNREACHABLE as error:
            self.backlog.database_unreachable(error)
            return
        except Exception:
            log.exception("upkeep skipped: storage mode not detected")
            return
        # Two steps, each logged on failure: a ranking is still worth refreshing when
        # the candles could not be rolled up.
        await self._step("candles not rolled up", maintenance.update_candles(since, at))
        await self._step("ranking not refreshed", maintenance.refresh_rankings())
        if not self._gap_filled:
            self._gap_filled = True
            self._in_background(self._fill_downtime_gap())

    async def _ensure_maintenance(self) -> Maintenance:
        if self._maintenance is None:
            maintenance = await start_maintenance(self._settings, self._pool)
            await maintenance.catch_up()
            self._maintenance = maintenance
            self._schedule_retention()
        return self._maintenance

    async def _step(self, failure: str, work: Awaitable[object]) -> None:
        """Await `work`, logging its failure with the traceback; a database gone is the
        writer's one line each way (the next upkeep catches up), not one more per step."""
        try:
            await work
        except UNREACHABLE as error:
            self.backlog.database_unreachable(error)
        except Exception:
            log.exception(failure)

    async def _fill_downtime_gap(self) -> None:
        """Fill the gap between the newest tick stored before this start and the start."""
        settings = self._settings
        try:
            report = await fill_gap(
                self._source,
                self._pool,
                self._started_at,
                interval_seconds=settings.collect_interval_seconds,
                max_hours=settings.gap_fill_max_hours,
            )
        except UNREACHABLE as error:
            log.warning("gap not filled: database unreachable (%s)", describe(error))
            return
        except Exception as error:
            log_failure(log, "gap not filled", error)
            return
        if report is not None:
            await self._after_fill(report, self._started_at)

    async def _after_fill(self, report: BackfillReport, end: datetime) -> None:
        if report.written and self._maintenance is not None:
            await self._step(
                "candles of the filled gap not updated",
                self._maintenance.after_cycles(report.start, end),
            )

    async def drop_expired_chunks(self) -> None:
        """The scheduled retention job of Apache mode; a failure is logged and retried next time."""
        if self._maintenance is not None:
            await self._step("retention failed", self._maintenance.drop_expired_chunks())

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        """Add the job: aligned to the interval, one instance, missed runs coalesced."""
        self._scheduler = scheduler
        interval = self._settings.collect_interval_seconds
        first = cycle_instant(datetime.now(UTC), interval) + timedelta(seconds=interval)
        scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_job(
            self._scheduled_collect,
            IntervalTrigger(seconds=interval, start_date=first, timezone=UTC),
            id=COLLECT_JOB,
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

    def _schedule_retention(self) -> None:
        if self._scheduler is None or self._maintenance is None or not self._maintenance.active:
            return
        every = self._settings.retention_check_seconds
        self._scheduler.add_job(
            self.drop_expired_chunks,
            IntervalTrigger(seconds=every, timezone=UTC),
            id="retention",
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, every // 2),
        )

    async def stop(self) -> None:
        """Stop fetching, let the fetch and the write under way finish within the grace, write
        what else fits in it, and leave the rest in the spool."""
        self._stopping = True
        if self._resuming is not None:
            self._resuming.cancel()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.stop_grace_seconds
        job = self._job
        if job is not None and not job.done():
            await asyncio.wait([job], timeout=max(0.0, deadline - loop.time()))
            if not job.done():
                job.cancel()
                await asyncio.wait([job])
        for task in list(self._fills):
            task.cancel()
        if self._fills:
            await asyncio.wait(list(self._fills))
        await self.backlog.stop(deadline)
        await asyncio.to_thread(self.spool.close)


async def serve(settings: Settings, source: PriceSource, pool: AsyncConnectionPool) -> None:
    """Collect until SIGTERM or SIGINT, whether or not the database answers."""
    collector = Collector(settings, source, pool)
    waiting, ticks = collector.spool.waiting()
    log.info(
        "spool %s: %d cycles (%d ticks) waiting, %d set aside",
        collector.spool.path,
        waiting,
        ticks,
        collector.spool.set_aside_count(),
    )
    state = metrics.CollectorState(
        collector.spool, collector.backlog, settings.collect_interval_seconds
    )
    server = metrics.MetricsServer(state)
    server.start(settings.metrics_host, settings.metrics_port)
    scheduler = AsyncIOScheduler(timezone=UTC)
    collector.schedule(scheduler)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    collector.resume_meanwhile()
    collector.backlog.start()
    scheduler.start()
    await stop.wait()
    log.info("stopping")
    server.stop()
    await collector.stop()
    log.info("stopped")
