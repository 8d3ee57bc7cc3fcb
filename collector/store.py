"""Where finished cycles go: the database, or a bounded in-memory backlog while it is down."""

import logging
import time
from collections import deque
from datetime import datetime

import psycopg
from psycopg_pool import AsyncConnectionPool

from collector.report import CycleReport
from collector.writer import QUERIES, TickWriter

log = logging.getLogger("collector")

# Errors that mean "the database cannot be reached now", not "this data is wrong":
# connection failures, server shutdowns and restarts, a full disk, a pool timeout.
UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)


class Store:
    """Writes each cycle's ticks and outcomes; keeps cycles while the database is unreachable.

    The backlog lives in memory, bounded by `max_backlog_ticks` (the oldest cycles
    are dropped past it, and counted). Memory rather than disk: it needs no volume,
    leaves nothing to clean up, and a collector restarted after a long outage fills
    the gap from the exchanges' candles instead.
    """

    def __init__(self, pool: AsyncConnectionPool, *, max_backlog_ticks: int = 1_000_000):
        self._pool = pool
        self._writer = TickWriter()
        self._max_backlog_ticks = max_backlog_ticks
        self._backlog: deque[CycleReport] = deque()
        self._down_since: float | None = None
        self._dropped_before_outage = 0
        self.dropped_ticks = 0  # since start, for tests and the log
        # The instant of the oldest cycle the latest successful save wrote: older than the
        # cycle just saved when a backlog went with it.
        self.written_since: datetime | None = None

    @property
    def backlog_ticks(self) -> int:
        return sum(report.fetched for report in self._backlog)

    async def save(self, report: CycleReport) -> bool:
        """Write `report` after any backlog, oldest first; True once nothing is left waiting."""
        self._backlog.append(report)
        self._trim()
        oldest = self._backlog[0].at
        written_cycles = 0
        while self._backlog:
            try:
                await self._write(self._backlog[0])
            except UNREACHABLE as error:
                self._went_down(error)
                return False
            self._backlog.popleft()
            written_cycles += 1
        self._came_back(written_cycles)
        self.written_since = oldest
        return True

    async def _write(self, report: CycleReport) -> None:
        ticks = [tick for outcome in report.outcomes for tick in outcome.ticks]
        started = time.monotonic()
        async with self._pool.connection() as conn:
            written = await self._writer.write(conn, ticks)
            report.write_seconds = time.monotonic() - started
            for outcome in report.outcomes:
                outcome.written = written.get(outcome.exchange, 0)
            await conn.execute(QUERIES["record_runs"], report.runs())

    def _trim(self) -> None:
        while len(self._backlog) > 1 and self.backlog_ticks > self._max_backlog_ticks:
            dropped = self._backlog.popleft()
            if self.dropped_ticks == self._dropped_before_outage:
                log.error(
                    "backlog full (%d ticks): dropping the oldest cycles from now on",
                    self._max_backlog_ticks,
                )
            self.dropped_ticks += dropped.fetched

    def _went_down(self, error: BaseException) -> None:
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self._dropped_before_outage = self.dropped_ticks
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.error(
            "database unreachable (%s): keeping cycles in memory, at most %d ticks",
            message,
            self._max_backlog_ticks,
        )

    def _came_back(self, written_cycles: int) -> None:
        if self._down_since is None:
            return
        dropped = self.dropped_ticks - self._dropped_before_outage
        lost = f"; {dropped} ticks dropped (backlog full)" if dropped else ""
        log.warning(
            "database reachable again after %.0f s: %d buffered cycles written%s",
            time.monotonic() - self._down_since,
            written_cycles,
            lost,
        )
        self._down_since = None
