"""The collector as a process: stopped cleanly, killed mid-run, restarted, gaps filled."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from collector.backfill import BackfillReport
from collector.gaps import fill_gap
from collector.sources.simulated import SimulatedSource
from collector.ticks import Tick, normalise
from collector.writer import write_ticks
from tests.integration.collector_process import (
    collectors,
    exited,
    gaps,
    spooled_instants,
    until,
)
from tests.integration.collector_process import stored_cycles as cycles_stored

ROOT = Path(__file__).resolve().parents[2]
PAIRS = 5


@pytest.fixture
def start_collector(database_url: str, tmp_path: Path) -> Iterator[object]:
    """Start `python -m collector` on simulated prices, a cycle a second; killed at teardown."""
    processes: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url,
            "PRICE_SOURCE": "simulated",
            "SUPPORTED_EXCHANGES": "kraken",
            "SIMULATED_PAIRS_PER_EXCHANGE": str(PAIRS),
            "COLLECT_INTERVAL_SECONDS": "1",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "collector"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


async def ticks_at(source: SimulatedSource, at: datetime) -> list[Tick]:
    return normalise("kraken", at, await source.fetch_quotes("kraken", at)).ticks


def stored_cycles(database_url: str) -> list[tuple[datetime, int]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT time, count(*) FROM ticks GROUP BY time ORDER BY time")
        return rows.fetchall()


def wait_for_cycles(database_url: str, count: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while len(stored_cycles(database_url)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} cycles after {seconds} s"
        time.sleep(0.2)


def test_sigterm_stops_the_collector_cleanly(start_collector: object, database_url: str) -> None:
    """SIGTERM ends the collector within the stop bound, with exit status 0."""
    process = start_collector()  # type: ignore[operator]
    wait_for_cycles(database_url, 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert 0 == process.returncode, stderr
    assert "stopping" in stderr


def test_sigkill_leaves_only_whole_cycles_and_a_restart_continues(
    start_collector: object, database_url: str
) -> None:
    """Killed at any moment and started again, every stored cycle holds every pair exactly once."""
    first = start_collector()  # type: ignore[operator]
    wait_for_cycles(database_url, 3)
    first.kill()
    first.communicate(timeout=10)
    before = len(stored_cycles(database_url))
    second = start_collector()  # type: ignore[operator]
    wait_for_cycles(database_url, before + 2)
    second.send_signal(signal.SIGTERM)
    second.communicate(timeout=15)

    assert all(PAIRS == count for _, count in stored_cycles(database_url))


async def fill_after_gap(
    database_url: str, conn: psycopg.AsyncConnection, gap: timedelta, max_hours: float, calls: int
) -> tuple[datetime, list[BackfillReport | None]]:
    """Store one cycle `gap` before this minute, then call fill_gap `calls` times."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    source = SimulatedSource(["kraken"], pairs_per_exchange=PAIRS, seed=3)
    await write_ticks(conn, await ticks_at(source, now - gap))
    async with AsyncConnectionPool(database_url, kwargs={"autocommit": True}, open=False) as pool:
        reports = [
            await fill_gap(source, pool, now, interval_seconds=60, max_hours=max_hours)
            for _ in range(calls)
        ]
    return now, reports


async def test_a_gap_is_filled_from_the_source_history(
    database_url: str, conn: psycopg.AsyncConnection
) -> None:
    """Thirty minutes without ticks are filled minute by minute; a second call finds no gap."""
    gap = timedelta(minutes=30)
    now, (filled, again) = await fill_after_gap(database_url, conn, gap, max_hours=6, calls=2)

    assert filled is not None
    assert (30 * PAIRS, None) == (filled.written, again)
    cursor = await conn.execute("SELECT count(DISTINCT time), min(time), max(time) FROM ticks")
    assert (31, now - gap, now) == await cursor.fetchone()


async def test_gap_filling_is_bounded(database_url: str, conn: psycopg.AsyncConnection) -> None:
    """A gap longer than the bound is filled only for its newest part."""
    gap = timedelta(hours=5)
    _, (filled,) = await fill_after_gap(database_url, conn, gap, max_hours=0.5, calls=1)

    assert filled is not None
    assert 30 * PAIRS == filled.written


async def test_a_restarted_collector_fills_the_gap_its_downtime_left(
    start_collector: object, database_url: str, conn: psycopg.AsyncConnection
) -> None:
    """Started ten minutes after the newest tick, the collector writes those ten minutes."""
    now = datetime.now(UTC).replace(microsecond=0)
    last = now - timedelta(minutes=10)
    source = SimulatedSource(["kraken"], pairs_per_exchange=PAIRS, seed=42)
    await write_ticks(conn, await ticks_at(source, last))

    process = start_collector()  # type: ignore[operator]
    deadline = time.monotonic() + 30
    filled: tuple[int, ...] | None = (0,)
    while filled is not None and filled[0] < 10 and time.monotonic() < deadline:
        # The process's own cycles all come after `now`: these are the gap's minutes.
        cursor = await conn.execute(
            "SELECT count(DISTINCT time) FROM ticks WHERE time > %s AND time <= %s",
            [last, now],
        )
        filled = await cursor.fetchone()
        await asyncio.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)

    assert (10,) == filled, stderr
    assert "filling the gap" in stderr


@contextlib.asynccontextmanager
async def collector_runs_locked(database_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """Hold collector_runs locked, so that the collector's next write waits; released on exit."""
    async with await psycopg.AsyncConnection.connect(database_url) as locker:
        await locker.execute("LOCK TABLE collector_runs IN ACCESS EXCLUSIVE MODE")
        yield locker
        await locker.rollback()


async def write_waiting(database_url: str) -> bool:
    """Whether a collector's write is waiting for a lock."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'datatracker-collector' AND wait_event_type = 'Lock'"
        )
        row = await cursor.fetchone()
        return bool(row and row[0])


def slow_write_settings(database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SUPPORTED_EXCHANGES": "kraken",
        "SIMULATED_PAIRS_PER_EXCHANGE": str(PAIRS),
        "COLLECT_INTERVAL_SECONDS": "1",
        "GAP_FILL_MAX_HOURS": "0",
        "STOP_GRACE_SECONDS": "8",
    }


async def test_sigterm_lets_a_slow_write_finish(database_url: str, tmp_path: Path) -> None:
    """SIGTERM while a write waits on a lock: once the lock goes (within the grace) the write
    and the cycles behind it are stored, the spool is empty and the exit is clean."""
    with collectors(tmp_path, **slow_write_settings(database_url)) as processes:
        process = processes.start()
        await until(lambda: has_cycles(database_url, 2), 60, "two cycles")
        async with collector_runs_locked(database_url):
            await until(lambda: write_waiting(database_url), 30, "a write waiting on the lock")
            await asyncio.sleep(1.5)  # another cycle or two queue up behind it
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1)
        assert 0 == await exited(process, 30)
        stderr = processes.stderr(process)

    instants = sorted(await cycles_stored(database_url))
    assert [] == gaps(instants, timedelta(seconds=1)), stderr
    assert [] == spooled_instants(tmp_path)
    assert "Traceback" not in stderr
    assert "CancelledError" not in stderr


async def test_sigterm_leaves_a_write_stuck_past_the_grace_in_the_spool(
    database_url: str, tmp_path: Path
) -> None:
    """A write still waiting when the grace ends is abandoned cleanly and left in the spool;
    the next start writes it, and every cycle once."""
    with collectors(tmp_path, **slow_write_settings(database_url)) as processes:
        first = processes.start(STOP_GRACE_SECONDS="2")
        await until(lambda: has_cycles(database_url, 2), 60, "two cycles")
        async with collector_runs_locked(database_url):
            await until(lambda: write_waiting(database_url), 30, "a write waiting on the lock")
            first.send_signal(signal.SIGTERM)
            assert 0 == await exited(first, 20)
        left = spooled_instants(tmp_path)
        second = processes.start()

        async def written() -> bool:
            cycles = await cycles_stored(database_url)
            return not spooled_instants(tmp_path) and max(cycles) > left[-1]

        await until(written, 60, "the spool written by the next start")
        second.send_signal(signal.SIGTERM)
        assert 0 == await exited(second, 30)
        stderr = processes.stderr(first)

    assert left, stderr
    assert "left in the spool for the next start" in stderr
    assert "Traceback" not in stderr
    assert "CancelledError" not in stderr
    cycles = await cycles_stored(database_url)
    assert set(left) <= set(cycles)
    assert {PAIRS} == set(cycles.values())


async def has_cycles(database_url: str, count: int) -> bool:
    return len(await cycles_stored(database_url)) >= count
