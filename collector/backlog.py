"""The writer: one task that writes spooled cycles to the database, oldest first.

The scheduled job only fetches and hands its cycle to `Backlog.keep`, which returns once
the cycle is on disk; the database's speed or absence never delays a fetch. The writer
drains the spool in order: a cycle is deleted from it only after its transaction
commits; a lost connection leaves it at the head to be tried again; any other failure
sets it aside so that the cycles behind it flow on.

When the spool cannot be written (a full or read-only disk, an I/O error) a cycle is held in
memory instead and the writer writes it straight to the database: no cycle is lost while
either way to durable storage is open. The spool's failure is logged once, and its
recovery, which needs nothing but the next cycle finding it writable again.
"""

import asyncio
import contextlib
import logging
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from collector import metrics
from collector.cycle import log_written
from collector.errors import UNREACHABLE, describe, storable
from collector.report import CycleReport
from collector.spool import SPOOL_ERRORS, Spool, decode_cycle, encode_cycle
from collector.store import Store

log = logging.getLogger("collector")

# How long the writer waits before trying the database again after failing to reach it.
RETRY_SECONDS = 1.0
# At most this long is spent on the cancelled write's rollback when stopping.
CANCEL_SECONDS = 5.0

# Upkeep once the writer has caught up: (oldest instant written since the last upkeep, newest).
Upkeep = Callable[[datetime, datetime], Awaitable[None]]


class Backlog:
    """Cycles kept on disk by `keep` and written in order by `run`, one transaction each."""

    def __init__(self, spool: Spool, store: Store, *, upkeep: Upkeep | None = None) -> None:
        self._spool = spool
        self._store = store
        self._upkeep = upkeep
        self._wake = asyncio.Event()
        self._stopping = False
        self._down_since: float | None = None
        self._evicted_ticks = 0
        self._recording_failed: set[int] = set()
        self._since: datetime | None = None  # oldest cycle written since the last upkeep
        self._newest: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        # Cycles the spool could not take, oldest first, with their encoded sizes.
        self._held: deque[tuple[CycleReport, int]] = deque()
        self._held_bytes = 0
        self._held_ticks = 0
        self._spool_failing = False
        self.evicted_ticks = 0  # since start, for tests and the log
        self.set_aside = 0

    def held(self) -> tuple[int, int]:
        """How many cycles, and ticks, the spool could not take and memory holds until the
        database takes them (read by the metrics' thread: counts kept as they change)."""
        return len(self._held), self._held_ticks

    @property
    def unreachable(self) -> bool:
        """Whether the last attempt to write found the database unreachable."""
        return self._down_since is not None

    async def keep(self, report: CycleReport) -> None:
        """Put the cycle on disk (dropping the oldest past the bound), or in memory when the
        spool cannot take it, and wake the writer."""
        try:
            evicted = await asyncio.to_thread(self._spool.put, report)
        except SPOOL_ERRORS as error:
            self._spool_failed(error)
            self._hold(report)
        else:
            self._spool_back()
            self._evicted(evicted.cycles, evicted.ticks)
        self._wake.set()

    def _spool_failed(self, error: BaseException) -> None:
        if self._spool_failing:
            return
        self._spool_failing = True
        log.error(
            "spool %s cannot be written (%s): writing cycles straight to the database, "
            "holding them in memory while it is unreachable, until the spool takes them again",
            self._spool.path,
            describe(error),
        )

    def _spool_back(self) -> None:
        if self._spool_failing:
            self._spool_failing = False
            log.warning("spool %s written again", self._spool.path)

    def _hold(self, report: CycleReport) -> None:
        """Keep a cycle the spool refused in memory, within the spool's bound (the newest
        always fits)."""
        size = len(encode_cycle(report))
        self._held.append((report, size))
        self._held_bytes += size
        self._held_ticks += report.fetched
        cycles = ticks = 0
        while self._held_bytes > self._spool.max_bytes and len(self._held) > 1:
            dropped, dropped_size = self._held.popleft()
            self._held_bytes -= dropped_size
            self._held_ticks -= dropped.fetched
            cycles, ticks = cycles + 1, ticks + dropped.fetched
        self._evicted(cycles, ticks)

    def _evicted(self, cycles: int, ticks: int) -> None:
        metrics.evicted(cycles, ticks)
        if cycles:
            if not self._evicted_ticks:
                log.error(
                    "spool full (%d bytes): dropping the oldest cycles from now on",
                    self._spool.max_bytes,
                )
            self._evicted_ticks += ticks
            self.evicted_ticks += ticks
            log.warning(
                "spool full: %d oldest cycles (%d ticks) dropped, %d ticks since it filled",
                cycles,
                ticks,
                self._evicted_ticks,
            )

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self.run(), name="collector-writer")

    async def run(self) -> None:
        """Write spooled cycles in order until stopped; upkeep whenever caught up."""
        failing = False
        while True:
            try:
                if not await self._step():
                    return
                failing = False
            except Exception:
                if not failing:  # once until the writer succeeds again
                    log.exception("the writer failed; trying again every %g s", RETRY_SECONDS)
                failing = True
                await self._pause()

    async def _step(self) -> bool:
        """Write the oldest spooled cycle, or wait for one; False once stopping and done."""
        if self._held:
            if not await self._write_held():
                if self._stopping:
                    return False
                await self._pause()
            return True
        head = await asyncio.to_thread(self._spool.oldest)
        if head is None:
            if self._stopping:
                return False
            await self._caught_up()
            self._wake.clear()
            waiting, _ = await asyncio.to_thread(self._spool.waiting)
            if not waiting and not self._held:
                await self._wake.wait()
            return True
        if not await self._write(*head):
            if self._stopping:
                return False
            await self._pause()
        return True

    async def _write(self, seq: int, body: bytes) -> bool:
        """Write one spooled cycle; False when the database could not be reached."""
        try:
            report = decode_cycle(body)
            await self._store.write(report)
        except UNREACHABLE as error:
            self._went_down(error)
            return False
        except Exception as error:
            await self._set_aside(seq, body, error)
            return True
        try:
            await asyncio.to_thread(self._spool.remove, seq)
        except SPOOL_ERRORS as error:  # skipped from now on, deleted with the next one
            self._spool_failed(error)
        await self._written(report)
        return True

    async def _write_held(self) -> bool:
        """Write the oldest cycle held in memory; False when the database could not be reached.
        One the database refuses for another reason is dropped: the spool cannot keep it."""
        report, size = self._held[0]
        try:
            await self._store.write(report)
        except UNREACHABLE as error:
            self._went_down(error)
            return False
        except Exception as error:
            log.error(
                "cycle %s lost: the database refused it and the spool cannot keep it: %s",
                report.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                describe(error),
                exc_info=error,
            )
        else:
            await self._written(report)
        if self._held and self._held[0][0] is report:
            self._held.popleft()
            self._held_bytes -= size
            self._held_ticks -= report.fetched
        return True

    async def _written(self, report: CycleReport) -> None:
        self._came_back()
        self._since = min(self._since or report.at, report.at)
        self._newest = max(self._newest or report.at, report.at)
        cycles, _ = await asyncio.to_thread(self._spool.waiting)
        cycles += len(self._held)
        log_written(report, f"; {cycles} cycles waiting" if cycles else "")

    async def _set_aside(self, seq: int, body: bytes, error: Exception) -> None:
        """Keep a refused cycle aside in the spool, say so once with the traceback, and record
        it in the database. One the spool cannot take aside (its disk full or failing) is
        recorded in the database only, and skipped: the cycles behind it flow on."""
        trace = storable("".join(traceback.format_exception(error)))
        try:
            await asyncio.to_thread(self._spool.set_aside, seq, describe(error), trace)
        except SPOOL_ERRORS as spool_error:
            self._spool_failed(spool_error)
            await self._drop_refused(seq, body, error, trace)
            return
        log.error("cycle set aside in the spool: %s", describe(error), exc_info=error)
        self.set_aside += 1
        metrics.ended("set_aside")
        await self._record_set_aside()

    async def _drop_refused(self, seq: int, body: bytes, error: Exception, trace: str) -> None:
        """A refused cycle the spool cannot keep aside: recorded in set_aside_cycles (its ticks
        are lost), said once with its traceback, and taken out of the queue."""
        report = decode_cycle(body)  # it decoded for the write the database refused
        log.error(
            "cycle %s lost: the database refused it and the spool cannot keep it aside: %s",
            report.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            describe(error),
            exc_info=error,
        )
        metrics.ended("lost")
        try:
            await self._store.record_set_aside(
                report, set_aside_at=datetime.now(UTC), error=describe(error), traceback=trace
            )
        except Exception as failure:  # the log line above is then the only record
            log.warning("lost cycle not recorded in set_aside_cycles: %s", describe(failure))
        with contextlib.suppress(*SPOOL_ERRORS):  # else skipped, deleted with the next one
            await asyncio.to_thread(self._spool.remove, seq)

    async def _record_set_aside(self) -> None:
        """Copy cycles set aside into set_aside_cycles; what fails now is tried when caught up."""
        for item in await asyncio.to_thread(self._spool.unrecorded):
            try:
                report = decode_cycle(item.body)
            except Exception:  # an undecodable body is recorded by its instant alone
                report = CycleReport(item.at, [])
            try:
                await self._store.record_set_aside(
                    report,
                    set_aside_at=item.set_aside_at,
                    error=item.error,
                    traceback=item.traceback,
                )
            except UNREACHABLE:
                return
            except Exception:
                if item.seq not in self._recording_failed:
                    self._recording_failed.add(item.seq)
                    log.exception("cycle %s set aside but not recorded in the database", item.at)
                continue
            await asyncio.to_thread(self._spool.mark_recorded, item.seq)

    async def _caught_up(self) -> None:
        """Once the spool is empty: record set-aside cycles, then upkeep for what was written.
        A failed upkeep keeps its span, to be tried again (with any newer cycles) next time."""
        await self._record_set_aside()
        since, newest = self._since, self._newest
        if since is None or newest is None or self._upkeep is None or self._stopping:
            return
        await self._upkeep(since, newest)
        self._since = self._newest = None

    async def _pause(self) -> None:
        """Wait a moment before trying the database again, or less when told to stop."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), RETRY_SECONDS)

    def database_unreachable(self, error: BaseException) -> None:
        """Note that other work (upkeep) found the database unreachable: said once, as the
        writer says it, until a write succeeds again."""
        self._went_down(error)

    def _went_down(self, error: BaseException) -> None:
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        log.error(
            "database unreachable (%s): keeping cycles in the spool %s, at most %d bytes",
            describe(error),
            self._spool.path,
            self._spool.max_bytes,
        )

    def _came_back(self) -> None:
        if self._down_since is None:
            return
        log.warning(
            "database reachable again after %.0f s: writing the spooled cycles in order",
            time.monotonic() - self._down_since,
        )
        self._down_since = None
        self._evicted_ticks = 0

    async def stop(self, deadline: float) -> None:
        """Let the write under way finish and flush what fits before `deadline` (loop time);
        whatever is left stays in the spool. At once when the database is unreachable."""
        task = self._task
        if task is None or task.done():
            return
        self._stopping = True
        self._wake.set()
        if not self.unreachable:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.wait([task], timeout=timeout)
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=CANCEL_SECONDS)
        waiting, ticks = await asyncio.to_thread(self._spool.waiting)
        if waiting:
            log.warning("%d cycles (%d ticks) left in the spool for the next start", waiting, ticks)
        if self._held:
            held = sum(report.fetched for report, _ in self._held)
            log.error(
                "%d cycles (%d ticks) lost: neither the spool nor the database took them",
                len(self._held),
                held,
            )
