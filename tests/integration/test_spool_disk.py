"""The spool on a real small filesystem (a 256 kB tmpfs): full, read-only, shared, bounded."""

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool

from collector.backlog import Backlog
from collector.cycle import fetch_cycle
from collector.sources.simulated import SimulatedSource
from collector.spool import SPOOL_FILE, SPOOL_SLACK_BYTES, Spool
from collector.store import Store
from tests.api_server import free_port
from tests.integration.collector_process import (
    CollectorProcesses,
    collectors,
    exited,
    gaps,
    stored_cycles,
    until,
)
from tests.integration.test_set_aside import AT, MINUTE, POISON, POISONED
from tests.tcp_proxy import TcpProxy

INTERVAL = timedelta(seconds=1)
EXCHANGES, PAIRS = "kraken,okx", 50


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 kB tmpfs mounted for the test (root only: skipped, saying why, where mounting is
    not permitted), unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = mount("-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(disk))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (CI runs as root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def spool_settings(database_url: str, disk: Path, **more: str) -> dict[str, str]:
    """A collector every second on 2 x 50 simulated pairs, its spool on `disk`."""
    return {
        "DATABASE_URL": database_url,
        "SUPPORTED_EXCHANGES": EXCHANGES,
        "SIMULATED_PAIRS_PER_EXCHANGE": str(PAIRS),
        "COLLECT_INTERVAL_SECONDS": "1",
        "GAP_FILL_MAX_HOURS": "0",
        "SPOOL_DIR": str(disk / "spool"),
        **more,
    }


def fill(disk: Path) -> Path:
    """Write a file on `disk` until it is full; return it."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as out:
        for size in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
        with contextlib.suppress(OSError):
            os.fsync(out.fileno())
    free = os.statvfs(disk)
    assert 0 == free.f_bavail, f"{free.f_bavail} blocks still free"
    return ballast


def spool_bytes(disk: Path) -> int:
    """What the spool's file and journal take on `disk`."""
    names = (SPOOL_FILE, f"{SPOOL_FILE}-journal", f"{SPOOL_FILE}-wal", f"{SPOOL_FILE}-shm")
    return sum((disk / "spool" / n).stat().st_size for n in names if (disk / "spool" / n).exists())


async def logged(processes: CollectorProcesses, what: str, count: int, seconds: float) -> None:
    """Wait until the first collector's log says `what` at least `count` times."""

    async def said() -> bool:
        return processes.stderr(processes.started[0]).count(what) >= count

    await until(said, seconds, f"{count} x {what!r} in the log")


async def test_a_spool_that_cannot_be_written_loses_no_cycle(
    proxy: TcpProxy, database_url: str, collector_url: str, small_disk: Path
) -> None:
    """As role collector at 1 s cycles, with the spool's disk full and the database away too,
    every instant is still stored exactly once with every pair, the spool's failure is logged
    once without a traceback, and it recovers by itself once the written cycles free room."""
    settings = spool_settings(proxy.route(collector_url), small_disk)
    with collectors(small_disk.parent, **settings) as processes:
        process = processes.start()

        async def stored(count: int) -> bool:
            return len(await stored_cycles(database_url)) >= count

        await until(lambda: stored(2), 60, "two cycles")
        # Full while the database is away: cycles the spool cannot take wait in memory, then
        # go straight to the database once it answers, the spool still full.
        ballast = fill(small_disk)
        await proxy.cut()
        await logged(processes, "cannot be written", 1, 60)
        await asyncio.sleep(3)
        await proxy.restore()
        await logged(processes, "written again", 1, 60)
        ballast.unlink()
        after = len(await stored_cycles(database_url))
        await until(lambda: stored(after + 3), 60, "cycles after the spool recovered")
        process.send_signal(signal.SIGTERM)
        assert 0 == await exited(process, 30)
        stderr = processes.stderr(process)

    cycles = await stored_cycles(database_url)
    assert [] == gaps(sorted(cycles), INTERVAL), stderr
    assert {2 * PAIRS} == set(cycles.values()), stderr
    assert 1 == stderr.count("cannot be written") == stderr.count("written again"), stderr
    assert "Traceback" not in stderr
    assert "lost" not in stderr
    failing = stderr.split("cannot be written", 1)[1].split("written again", 1)[0]
    assert "ticks written" in failing, stderr  # straight to the database meanwhile


async def test_the_spool_stays_within_its_bound_on_a_small_disk(
    proxy: TcpProxy, collector_url: str, small_disk: Path
) -> None:
    """With the database away and SPOOL_MAX_MB=0.1, the spool's file and journal never pass
    the bound plus SPOOL_SLACK_BYTES (so they fit a 256 kB disk); the oldest cycles go."""
    bound = int(0.1 * 2**20) + SPOOL_SLACK_BYTES
    settings = spool_settings(proxy.route(collector_url), small_disk, SPOOL_MAX_MB="0.1")
    await proxy.cut()
    peak = 0
    with collectors(small_disk.parent, **settings) as processes:
        process = processes.start()
        loop = asyncio.get_running_loop()
        until_time = loop.time() + 60
        while loop.time() < until_time and "dropped" not in processes.stderr(process):
            peak = max(peak, spool_bytes(small_disk))
            await asyncio.sleep(0.01)
        for _ in range(500):  # five more seconds of dropping the oldest
            peak = max(peak, spool_bytes(small_disk))
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        assert 0 == await exited(process, 30)
        stderr = processes.stderr(process)

    assert "spool full" in stderr, stderr
    assert "cannot be written" not in stderr, stderr
    assert 0 < peak <= bound, (peak, bound)


async def test_a_second_collector_on_the_same_spool_is_refused(
    collector_url: str, small_disk: Path
) -> None:
    """A second collector given the same SPOOL_DIR exits at once with status 2 and one line
    naming the first; once the first is SIGKILLed, a new one starts on that spool."""
    with collectors(small_disk.parent, **spool_settings(collector_url, small_disk)) as processes:
        first = processes.start()
        await logged(processes, "spool ", 1, 30)
        second = processes.start()
        status = await exited(second, 30)
        refused = processes.stderr(second)
        first.kill()
        await exited(first, 10)
        third = processes.start()
        await asyncio.sleep(3)
        running = third.poll() is None
        third.send_signal(signal.SIGTERM)
        assert 0 == await exited(third, 30)

    assert 2 == status, refused
    assert 1 == len(refused.strip().splitlines()), refused
    assert f"in use by another collector (pid {first.pid})" in refused
    assert running, processes.stderr(third)


def unusable_spool_dir(kind: str, disk: Path) -> Path:
    """A SPOOL_DIR on `disk` that cannot hold a spool: a file in its place, a new directory on
    a full disk, or one on a file system remounted read-only."""
    if kind == "a file":
        (disk / "spool").write_text("not a directory\n")
    elif kind == "a full disk":
        fill(disk)
    else:
        mount("-o", "remount,ro", str(disk))
    return disk / "spool"


@pytest.mark.parametrize("kind", ["a file", "a full disk", "a read-only disk"])
async def test_a_spool_dir_that_cannot_hold_the_spool_stops_the_collector(
    collector_url: str, small_disk: Path, kind: str
) -> None:
    """A SPOOL_DIR that is a file, new on a full disk, or read-only stops the collector at
    start with status 2 and one line naming SPOOL_DIR and why, without a traceback."""
    spool_dir = unusable_spool_dir(kind, small_disk)
    settings = spool_settings(collector_url, small_disk, SPOOL_DIR=str(spool_dir))
    with collectors(small_disk.parent, **settings) as processes:
        process = processes.start()
        status = await exited(process, 30)
        stderr = processes.stderr(process)

    assert 2 == status, stderr
    assert 1 == len(stderr.strip().splitlines()), stderr
    assert f"SPOOL_DIR {spool_dir} cannot hold the spool: " in stderr
    assert "Traceback" not in stderr


def scrape(port: int) -> dict[str, float]:
    """The collector's /metrics, as Prometheus reads it: each unlabelled sample's value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def test_cycles_held_in_memory_show_on_the_collector_s_metrics(
    proxy: TcpProxy, database_url: str, collector_url: str, small_disk: Path
) -> None:
    """With the spool's disk full and the database away, the collector's /metrics counts the
    cycles held in memory and their ticks (every pair of each), and the writer's lag; once
    the database is back they are written and the gauges fall to 0."""
    port = free_port()
    settings = spool_settings(proxy.route(collector_url), small_disk, METRICS_PORT=str(port))
    with collectors(small_disk.parent, **settings) as processes:
        process = processes.start()
        await until(lambda: stored_count(database_url, 2), 60, "two cycles")
        await proxy.cut()
        fill(small_disk)

        async def held(cycles: int) -> bool:
            return scrape(port)["datatracker_collector_held_cycles"] >= cycles

        await until(lambda: held(3), 60, "three cycles held")
        while_held = scrape(port)
        await proxy.restore()

        async def none_held() -> bool:
            return scrape(port)["datatracker_collector_held_cycles"] == 0

        await until(none_held, 60, "the held cycles written")
        after = scrape(port)
        process.send_signal(signal.SIGTERM)
        assert 0 == await exited(process, 30)
        stderr = processes.stderr(process)

    cycles = while_held["datatracker_collector_held_cycles"]
    assert 2 * PAIRS * cycles == while_held["datatracker_collector_held_ticks"], stderr
    assert cycles <= while_held["datatracker_collector_writer_lag_seconds"], stderr
    assert 0 == after["datatracker_collector_held_ticks"]
    assert 0 == after["datatracker_collector_writer_lag_seconds"]
    assert [] == gaps(sorted(await stored_cycles(database_url)), INTERVAL), stderr


async def stored_count(database_url: str, count: int) -> bool:
    """Whether at least `count` instants are stored."""
    return len(await stored_cycles(database_url)) >= count


async def test_a_cycle_refused_while_the_spool_is_full_is_recorded_once_and_the_rest_flow_on(
    database_url: str, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the spool's disk full, a cycle the database refuses cannot be kept aside in the
    spool: it is recorded in set_aside_cycles, logged once with its traceback, and the cycles
    behind it are written, rather than the writer failing on it every second."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(POISON)
    caplog.set_level(logging.INFO, logger="collector")
    async with AsyncConnectionPool(database_url, min_size=1, kwargs={"autocommit": True}) as pool:
        spool = Spool(small_disk / "spool", max_bytes=2**20)
        backlog = Backlog(spool, Store(pool))
        # The refused cycle is the largest: setting it aside would take pages the disk lacks.
        for at, pairs in ((AT, 4), (POISONED, 2000), (AT + 2 * MINUTE, 4)):
            source = SimulatedSource(["kraken"], pairs_per_exchange=pairs, seed=5)
            await backlog.keep(await fetch_cycle(source, at, timeout_seconds=5))
        fill(small_disk)
        backlog.start()

        async def drained() -> bool:
            return (0, 0) == await asyncio.to_thread(spool.waiting)

        try:
            await until(drained, 30, "the spool written")
            await asyncio.sleep(2)  # two of the writer's retries, were it failing
        finally:
            await backlog.stop(asyncio.get_running_loop().time() + 5)
            spool.close()

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT time FROM collector_runs GROUP BY time ORDER BY time")
        written = await cursor.fetchall()
        cursor = await conn.execute("SELECT time, error FROM set_aside_cycles")
        recorded = await cursor.fetchall()
    assert [(AT,), (AT + 2 * MINUTE,)] == written
    assert [(POISONED, "DataException: poisoned cycle")] == recorded
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert 1 == len(tracebacks), tracebacks
    assert "poisoned cycle" in tracebacks[0]
    assert 1 == caplog.text.count("cannot be written"), caplog.text
