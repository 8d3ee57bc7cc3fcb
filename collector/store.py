"""Writes a cycle to the database: ticks, markets and run records in one transaction."""

import time
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from collector import metrics
from collector.report import CycleReport
from collector.writer import QUERIES, TickWriter


class Store:
    """Writes whole cycles: registering markets, the COPY of the ticks, the markets' last
    touch and the collector_runs rows commit together or not at all."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._writer = TickWriter()

    async def write(self, report: CycleReport) -> None:
        """Store the cycle in one transaction, counting what each exchange got written.

        Raises what the database raised; nothing of the cycle is stored then.
        """
        ticks = [tick for outcome in report.outcomes for tick in outcome.ticks]
        started = time.monotonic()
        async with self._pool.connection() as conn, self._writer.transaction(conn):
            written = await self._writer.write(conn, ticks)
            for outcome in report.outcomes:
                outcome.written = written.get(outcome.exchange, 0)
            await conn.execute(QUERIES["record_runs"], report.runs())
        report.write_seconds = time.monotonic() - started
        report.stored = True
        metrics.written(report)

    async def record_set_aside(
        self,
        report: CycleReport,
        *,
        set_aside_at: datetime,
        error: str,
        traceback: str,
    ) -> None:
        """Record in set_aside_cycles that this cycle was set aside (a repeat is ignored)."""
        params = {
            "time": report.at,
            "set_aside_at": set_aside_at,
            "error": error,
            "traceback": traceback,
            "exchanges": [outcome.exchange for outcome in report.outcomes],
            "ticks": report.fetched,
        }
        async with self._pool.connection() as conn:
            await conn.execute(QUERIES["record_set_aside"], params)
