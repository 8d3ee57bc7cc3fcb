"""The collector as a process: stopped cleanly, killed mid-run, restarted, gaps filled."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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
