"""`python -m collector` as a real process, and what tests read of its database and spool."""

import asyncio
import itertools
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from collector.spool import SPOOL_FILE

ROOT = Path(__file__).resolve().parents[2]


class CollectorProcesses:
    """Starts collectors on simulated prices in one working directory (so one spool)."""

    def __init__(self, workdir: Path, **settings: str) -> None:
        self.workdir = workdir
        self.settings = settings
        self.started: list[subprocess.Popen[str]] = []
        self._logs: list[Path] = []

    def start(self, **overrides: str) -> subprocess.Popen[str]:
        """Start one more collector; its stderr goes to a file (see `stderr`)."""
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT),
            "PRICE_SOURCE": "simulated",
            "SPOOL_DIR": str(self.workdir / "spool"),
            **self.settings,
            **overrides,
        }
        log = self.workdir / f"collector-{len(self.started)}.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "collector"],
                cwd=self.workdir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
            )
        self.started.append(process)
        self._logs.append(log)
        return process

    def stderr(self, process: subprocess.Popen[str]) -> str:
        """What the process has logged so far."""
        return self._logs[self.started.index(process)].read_text()

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


@contextmanager
def collectors(workdir: Path, **settings: str) -> Iterator[CollectorProcesses]:
    """Collector processes that are killed, if still running, on the way out."""
    processes = CollectorProcesses(workdir, **settings)
    try:
        yield processes
    finally:
        processes.stop_all()


async def stored_cycles(database_url: str) -> dict[datetime, int]:
    """Each stored instant with its number of ticks."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT time, count(*) FROM ticks GROUP BY time ORDER BY time")
        return dict(await cursor.fetchall())


def spooled_instants(workdir: Path) -> list[datetime]:
    """The instants of the cycles waiting in the spool under `workdir`, oldest first."""
    path = workdir / "spool" / SPOOL_FILE
    if not path.exists():
        return []
    with sqlite3.connect(path) as spool:
        rows = spool.execute("SELECT at FROM cycles ORDER BY seq").fetchall()
    return [datetime.fromtimestamp(at, UTC) for (at,) in rows]


async def until(
    condition: Callable[[], Awaitable[bool]], seconds: float, what: str, poll: float = 0.25
) -> None:
    """Poll `condition` until it holds; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds:g} s"
        await asyncio.sleep(poll)


async def exited(process: subprocess.Popen[str], seconds: float) -> int:
    """The exit status of `process`, waited for without blocking the event loop."""
    deadline = time.monotonic() + seconds
    while process.poll() is None:
        assert time.monotonic() < deadline, f"the collector did not exit within {seconds:g} s"
        await asyncio.sleep(0.1)
    return process.returncode


def gaps(instants: list[datetime], interval: timedelta) -> list[tuple[datetime, datetime]]:
    """The (before, after) pairs of consecutive instants further apart than one interval."""
    return [(a, b) for a, b in itertools.pairwise(instants) if b - a > interval]
