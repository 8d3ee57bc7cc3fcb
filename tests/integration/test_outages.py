"""Database outages: the collector fetches on, keeps every cycle on disk and writes each once;
the API says 503."""

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from collector.backlog import Backlog
from collector.cycle import fetch_cycle
from collector.maintenance import Maintenance
from collector.service import Collector
from collector.sources.simulated import SimulatedSource
from collector.spool import Spool
from collector.store import Store
from collector.ticks import Tick
from collector.writer import write_ticks
from datatracker.circuit import CircuitPool
from datatracker.database import create_pool
from datatracker.settings import load_settings
from datatracker.storage import StorageMode
from tests.api_server import serve_api
from tests.integration.collector_process import (
    collectors,
    exited,
    gaps,
    spooled_instants,
    stored_cycles,
    until,
)
from tests.integration.history import settings_for
from tests.tcp_proxy import TcpProxy

AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
INTERVAL = timedelta(seconds=2)
EXCHANGES, PAIRS = "kraken,okx", 5
OUTAGE_SECONDS = 20
# Generous for a loaded 2-core machine: the time to write every spooled cycle.
RECOVERY_SECONDS = 120
# The writer writes again this soon after the database is back: its pool probes the database
# every 0.5 s while it is away (datatracker.circuit), and the writer tries every second.
# psycopg_pool's own reconnection would next try about 11 s after a 20 s outage.
WRITING_AGAIN_SECONDS = 5


def collector_settings(database_url: str) -> dict[str, str]:
    """A collector every 2 s on 2 x 5 simulated pairs, without gap filling."""
    return {
        "DATABASE_URL": database_url,
        "SUPPORTED_EXCHANGES": EXCHANGES,
        "SIMULATED_PAIRS_PER_EXCHANGE": str(PAIRS),
        "COLLECT_INTERVAL_SECONDS": str(INTERVAL.seconds),
        "GAP_FILL_MAX_HOURS": "0",
    }


@asynccontextmanager
async def collector_pool(url: str) -> AsyncIterator[CircuitPool]:
    """A collector's pool of one connection to `url` that gives up after 2 s, closed after."""
    pool = create_pool(url, max_size=1, name="collector", timeout=2)
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def proxied_pool(proxy: TcpProxy, database_url: str) -> AsyncIterator[CircuitPool]:
    """A collector's pool through `proxy`, which a test cuts and restores."""
    async with collector_pool(proxy.route(database_url)) as pool:
        yield pool


async def runs_per_cycle(database_url: str) -> set[int]:
    """The distinct numbers of collector_runs rows per cycle instant."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT DISTINCT n FROM (SELECT count(*) AS n FROM collector_runs GROUP BY time) AS c"
        )
        return {row[0] for row in await cursor.fetchall()}


async def test_a_database_stop_keeps_every_cycle_instant_once(
    proxy: TcpProxy, database_url: str, tmp_path: Path
) -> None:
    """At 2 s cycles, a 20 s stop loses no instant: each is stored once, with every pair."""
    with collectors(tmp_path, **collector_settings(proxy.route(database_url))) as processes:
        process = processes.start()

        async def three_cycles() -> bool:
            return len(await stored_cycles(database_url)) >= 3

        await until(three_cycles, 60, "three cycles before the outage")
        await proxy.cut()
        await asyncio.sleep(OUTAGE_SECONDS)
        stored_before = len(await stored_cycles(database_url))
        await proxy.restore()
        back = datetime.now(UTC)

        async def writing_again() -> bool:
            return len(await stored_cycles(database_url)) > stored_before

        await until(writing_again, WRITING_AGAIN_SECONDS, "the writer writing after the outage")

        async def caught_up() -> bool:
            cycles = await stored_cycles(database_url)
            return max(cycles) > back + 2 * INTERVAL

        await until(caught_up, RECOVERY_SECONDS, "the spooled cycles written after the outage")
        process.send_signal(signal.SIGTERM)
        assert 0 == await exited(process, 30)
        stderr = processes.stderr(process)

    cycles = await stored_cycles(database_url)
    instants = sorted(cycles)
    during = [at for at in instants if back - timedelta(seconds=OUTAGE_SECONDS) < at < back]
    assert [] == gaps(instants, INTERVAL), stderr
    assert {2 * PAIRS} == set(cycles.values())
    assert {2} == await runs_per_cycle(database_url)
    assert len(during) >= OUTAGE_SECONDS // INTERVAL.seconds - 1
    # The outage is in the log, once each way: while the database is away the writer's
    # every try is refused at once (datatracker.circuit), never a line per cycle.
    assert "database unreachable" in stderr, stderr
    assert 1 == stderr.count("keeping cycles in the spool"), stderr
    assert 1 == stderr.count("database reachable again"), stderr
    assert "maximum number of running instances" not in stderr
    assert "Traceback" not in stderr
    # psycopg_pool's two-line warning per connection attempt is not logged.
    assert "error connecting" not in stderr
    assert "Is the server running" not in stderr


async def test_a_collector_killed_during_an_outage_loses_no_spooled_cycle(
    proxy: TcpProxy, database_url: str, tmp_path: Path
) -> None:
    """SIGKILLed while the database is down and restarted before it is back, the collector
    writes every cycle both runs fetched, once: gaps only where no collector ran."""
    with collectors(tmp_path, **collector_settings(proxy.route(database_url))) as processes:
        first = processes.start()

        async def two_cycles() -> bool:
            return len(await stored_cycles(database_url)) >= 2

        async def spooled(count: int) -> bool:
            return len(spooled_instants(tmp_path)) >= count

        await until(two_cycles, 60, "two cycles before the outage")
        await proxy.cut()
        await until(lambda: spooled(3), 60, "three cycles spooled by the first collector")
        first.kill()
        await exited(first, 10)
        kept_by_first = spooled_instants(tmp_path)
        second = processes.start()
        await until(
            lambda: spooled(len(kept_by_first) + 3), 60, "three cycles spooled by the second"
        )
        await proxy.restore()

        async def drained() -> bool:
            cycles = await stored_cycles(database_url)
            return not spooled_instants(tmp_path) and max(cycles) > kept_by_first[-1] + INTERVAL

        await until(drained, RECOVERY_SECONDS, "the spool written after the outage")
        second.send_signal(signal.SIGTERM)
        assert 0 == await exited(second, 30)
        stderr = processes.stderr(second)

    cycles = await stored_cycles(database_url)
    instants = sorted(cycles)
    assert set(kept_by_first) <= set(instants)
    assert {2 * PAIRS} == set(cycles.values())
    assert {2} == await runs_per_cycle(database_url)
    # The only hole is the restart: from the first collector's last cycle to the second's first.
    assert [] == [g for g in gaps(instants, INTERVAL) if g[0] != kept_by_first[-1]], stderr
    assert f"{len(kept_by_first)} cycles ({len(kept_by_first) * 2 * PAIRS} ticks) waiting" in stderr


async def test_api_answers_503_during_an_outage_and_recovers(
    proxy: TcpProxy, database_url: str, conn: psycopg.AsyncConnection
) -> None:
    """/health is 503 (JSON) while the database is cut off, and 200 again once it is back
    (once the pool's probe, every 0.5 s, has reached it)."""
    await conn.execute("SELECT 1")
    settings = load_settings(_env_file=None, database_url=proxy.route(database_url))
    async with serve_api(settings) as api:
        before = await api.get("/health")
        await proxy.cut()
        during = await api.get("/health")
        await proxy.restore()

        async def healthy() -> bool:
            return (await api.get("/health")).status_code == 200

        await until(healthy, WRITING_AGAIN_SECONDS, "/health 200 after the outage")

    assert [200, 503] == [r.status_code for r in (before, during)]
    assert "database unavailable, try again shortly" == during.json()["detail"]


async def test_candles_of_a_written_backlog_are_rolled_up(
    proxy: TcpProxy,
    proxied_pool: CircuitPool,
    database_url: str,
    conn: psycopg.AsyncConnection,
    tmp_path: Path,
    edition: StorageMode,
) -> None:
    """After an outage, upkeep covers every spooled cycle's bucket, not only the last one."""
    source = SimulatedSource(["kraken"], pairs_per_exchange=3, seed=4)
    maintenance = Maintenance(settings_for(database_url), proxied_pool, edition)
    upkept: list[tuple[datetime, datetime]] = []

    async def upkeep(since: datetime, at: datetime) -> None:
        await maintenance.after_cycles(since, at)
        upkept.append((since, at))

    backlog = Backlog(Spool(tmp_path, max_bytes=2**20), Store(proxied_pool), upkeep=upkeep)
    try:
        await proxy.cut()
        backlog.start()
        for n in (0, 5, 10):  # three 5-minute buckets
            await backlog.keep(await fetch_cycle(source, AT + n * MINUTE, timeout_seconds=5))
        await proxy.restore()

        async def upkeep_done() -> bool:
            return bool(upkept)

        await until(upkeep_done, RECOVERY_SECONDS, "upkeep after the spool was written")
    finally:
        await backlog.stop(asyncio.get_running_loop().time() + 5)

    assert [(AT, AT + 10 * MINUTE)] == upkept
    cursor = await conn.execute("SELECT count(DISTINCT bucket) FROM candles_5m")
    assert (3,) == await cursor.fetchone()


async def test_an_upkeep_that_fails_is_tried_again_with_its_whole_span(
    database_url: str, tmp_path: Path
) -> None:
    """Upkeep raising (the database refusing the roll-up, say) loses no span: the writer tries
    again, and the retry covers every cycle written since the last upkeep that succeeded."""
    source = SimulatedSource(["kraken"], pairs_per_exchange=2, seed=4)
    attempts: list[tuple[datetime, datetime]] = []

    async def upkeep(since: datetime, at: datetime) -> None:
        attempts.append((since, at))
        if len(attempts) == 1:
            raise psycopg.errors.LockNotAvailable("simulated: the roll-up could not lock")

    async with collector_pool(database_url) as pool:
        backlog = Backlog(Spool(tmp_path, max_bytes=2**20), Store(pool), upkeep=upkeep)
        try:
            await backlog.keep(await fetch_cycle(source, AT, timeout_seconds=5))
            backlog.start()

            async def tried_twice() -> bool:
                return len(attempts) >= 2

            await until(tried_twice, 30, "upkeep tried again")
        finally:
            await backlog.stop(asyncio.get_running_loop().time() + 5)

    assert [(AT, AT), (AT, AT)] == attempts[:2]


async def cycle_ticks(source: SimulatedSource, at: datetime) -> list[Tick]:
    """The ticks of the source's cycle at `at`."""
    report = await fetch_cycle(source, at, timeout_seconds=5)
    return [tick for outcome in report.outcomes for tick in outcome.ticks]


@pytest.mark.edition("apache")  # in timescale mode a cycle's update leaves it to the policies
async def test_candles_a_roll_up_missed_are_caught_up_by_the_next(
    proxy: TcpProxy,
    proxied_pool: CircuitPool,
    database_url: str,
    conn: psycopg.AsyncConnection,
) -> None:
    """A cycle whose candle roll-up fails (the database gone) gets its candles with the next
    cycle's roll-up, though that cycle lies in a later bucket."""
    maintenance = Maintenance(settings_for(database_url), proxied_pool, "apache")
    source = SimulatedSource(["kraken"], pairs_per_exchange=2, seed=4)
    first, second = AT, AT + 10 * MINUTE  # two 5-minute buckets apart
    await write_ticks(conn, await cycle_ticks(source, first))
    await proxy.cut()
    with pytest.raises(psycopg.OperationalError):
        await maintenance.update_candles(first, first)
    await proxy.restore()

    async def pool_up() -> bool:
        return not proxied_pool.down

    await until(pool_up, WRITING_AGAIN_SECONDS, "the pool's probe reaching the database")
    await write_ticks(conn, await cycle_ticks(source, second))
    await maintenance.update_candles(second, second)

    cursor = await conn.execute("SELECT bucket FROM candles_5m GROUP BY bucket ORDER BY bucket")
    assert [(first,), (second,)] == await cursor.fetchall()


async def test_a_database_gone_during_upkeep_is_one_line_each_way(
    proxy: TcpProxy,
    proxied_pool: CircuitPool,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database going away while the candles and the ranking are brought up to date is
    said once, by the writer's `database unreachable`, and once back, by its `reachable
    again`: no line more per upkeep step that found it gone."""
    settings = load_settings(_env_file=None, database_url=database_url, gap_fill_max_hours=0)
    source = SimulatedSource(["kraken"], pairs_per_exchange=2, seed=4)
    spool = Spool(tmp_path, max_bytes=2**20)
    collector = Collector(settings, source, proxied_pool, spool)
    caplog.set_level(logging.INFO, logger="collector")
    await collector.upkeep(AT, AT)  # the storage mode, while the database answers
    await collector.wait_for_fills()
    await proxy.cut()
    for _ in range(3):
        await collector.upkeep(AT, AT + MINUTE)
    await proxy.restore()
    await collector.backlog.keep(await fetch_cycle(source, AT + MINUTE, timeout_seconds=5))
    collector.backlog.start()

    async def written() -> bool:
        return "ticks written" in caplog.text

    try:
        await until(written, 30, "the cycle written")
    finally:
        await collector.backlog.stop(asyncio.get_running_loop().time() + 5)
        spool.close()

    said = [
        r.getMessage()
        for r in caplog.records
        if r.name == "collector" and r.levelno >= logging.WARNING
    ]
    assert 2 == len(said), said
    assert said[0].startswith("database unreachable (")
    assert said[1].startswith("database reachable again after ")
