"""A real collector files each cycle under the instant it was scheduled for, at 1 s cycles, and
a start while the database is away schedules and fetches at once."""

import asyncio
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from datatracker.settings import load_settings
from tests.api_server import serve_api
from tests.integration.collector_process import (
    collectors,
    exited,
    gaps,
    stored_cycles,
    until,
)
from tests.tcp_proxy import TcpProxy

PAIRS = 5
# "2026-12-06T03:01:02.345Z INFO collector: cycle 2026-12-06T03:01:02Z: 10 ticks written …"
WRITTEN = re.compile(r"^(\S+Z) INFO collector: cycle (\S+Z): \d+ ticks written", re.MULTILINE)
FIRST = re.compile(r"^(\S+)T\S+ INFO collector: collecting .* first cycle at (\S+)Z$", re.M)


def settings_for(database_url: str, interval: int) -> dict[str, str]:
    """A collector every `interval` seconds on 2 x 5 simulated pairs, without gap filling."""
    return {
        "DATABASE_URL": database_url,
        "SUPPORTED_EXCHANGES": "kraken,okx",
        "SIMULATED_PAIRS_PER_EXCHANGE": str(PAIRS),
        "COLLECT_INTERVAL_SECONDS": str(interval),
        "GAP_FILL_MAX_HOURS": "0",
    }


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def first_cycle(stderr: str) -> datetime:
    """The first cycle's instant, as the collector announced it on starting."""
    match = FIRST.search(stderr)
    assert match, stderr
    return parse(f"{match[1]}T{match[2]}Z")


async def test_1_s_cycles_are_filed_under_their_scheduled_instants(
    database_url: str, collector_url: str, api_url: str, tmp_path: Path
) -> None:
    """At 1 s cycles, as role collector: every stored instant is a whole second, one per
    second from the first announced on, each written only after its instant began (never
    filed ahead), and /health as role api never reports a negative age."""
    ages: list[float] = []
    with collectors(tmp_path, **settings_for(collector_url, 1)) as processes:
        process = processes.start()

        async def three() -> bool:
            return len(await stored_cycles(database_url)) >= 3

        await until(three, 60, "three cycles")
        api_settings = load_settings(_env_file=None, database_url=api_url)
        async with serve_api(api_settings) as api:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                health = (await api.get("/health")).json()
                ages.append(health["newest_tick_age_seconds"])
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert 0 == await exited(process, 30)
        stderr = processes.stderr(process)

    cycles = await stored_cycles(database_url)
    instants = sorted(cycles)
    assert instants[0] == first_cycle(stderr), stderr
    assert all(at.microsecond == 0 for at in instants)
    assert [] == gaps(instants, timedelta(seconds=1)), stderr
    assert {2 * PAIRS} == set(cycles.values())
    written = [(parse(logged), parse(at)) for logged, at in WRITTEN.findall(stderr)]
    assert len(written) >= 10, stderr
    assert [] == [(logged, at) for logged, at in written if logged < at], stderr
    assert len(ages) > 50
    assert min(ages) >= 0, ages


async def test_a_start_while_the_database_is_away_collects_at_once(
    proxy: TcpProxy, database_url: str, collector_url: str, tmp_path: Path
) -> None:
    """Started while the database is cut off, at 1 s cycles, the collector schedules its first
    instant at once (within 2 s of its first log line; the old start waited 5 s for the
    database first), and once the database is back every instant from that first one on is
    stored exactly once with every pair."""
    with collectors(tmp_path, **settings_for(proxy.route(collector_url), 1)) as processes:
        await proxy.cut()
        process = processes.start()

        async def spooling() -> bool:
            return "first cycle at" in processes.stderr(process)

        await until(spooling, 30, "the first cycle scheduled")
        await asyncio.sleep(6)
        await proxy.restore()
        back = datetime.now(UTC)

        async def caught_up() -> bool:
            cycles = await stored_cycles(database_url)
            return bool(cycles) and max(cycles) > back + timedelta(seconds=2)

        await until(caught_up, 120, "the cycles spooled during the outage written")
        process.send_signal(signal.SIGTERM)
        assert 0 == await exited(process, 30)
        stderr = processes.stderr(process)

    first = first_cycle(stderr)
    started = parse(stderr.split(" ", 1)[0])
    cycles = await stored_cycles(database_url)
    instants = sorted(cycles)
    assert first - started < timedelta(seconds=2), stderr
    assert instants[0] == first, stderr
    assert [] == gaps(instants, timedelta(seconds=1)), stderr
    assert {2 * PAIRS} == set(cycles.values())
    assert len([at for at in instants if at < back]) >= 6
    assert "Traceback" not in stderr
