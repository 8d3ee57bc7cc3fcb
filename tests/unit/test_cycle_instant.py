"""A cycle's instant: the multiple of the interval the scheduler fired it for, whatever the
clock says when it runs."""

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from psycopg_pool import AsyncConnectionPool

from collector.cycle import cycle_instant, scheduled_instant
from collector.service import Collector
from collector.sources.simulated import SimulatedSource
from collector.spool import Spool, decode_cycle
from datatracker.settings import load_settings

NOON = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "interval", "expected"),
    [
        (NOON + timedelta(milliseconds=5), 60, NOON),
        (NOON + timedelta(seconds=42), 60, NOON),
        (NOON - timedelta(milliseconds=400), 60, NOON - timedelta(minutes=1)),
        (NOON + timedelta(minutes=7, seconds=30), 300, NOON + timedelta(minutes=5)),
        (NOON - timedelta(milliseconds=991), 1, NOON - timedelta(seconds=1)),
    ],
)
def test_a_cycle_run_by_hand_is_the_one_under_way(
    now: datetime, interval: int, expected: datetime
) -> None:
    """`now` floored to the interval: a run a hair before an instant belongs to the one before."""
    assert expected == cycle_instant(now, interval)


@pytest.mark.parametrize(
    ("scheduled", "interval", "expected"),
    [
        (NOON, 1, NOON),
        (NOON - timedelta(seconds=1), 1, NOON - timedelta(seconds=1)),
        (NOON + timedelta(microseconds=1), 1, NOON),
        (NOON - timedelta(microseconds=1), 1, NOON),
        (NOON, 3600, NOON),
        (NOON - timedelta(seconds=3600), 3600, NOON - timedelta(hours=1)),
        (NOON + timedelta(milliseconds=3), 3600, NOON),
    ],
)
def test_a_scheduled_cycle_is_filed_under_its_scheduled_instant(
    scheduled: datetime, interval: int, expected: datetime
) -> None:
    """The scheduled fire time decides the instant (snapped to the interval's multiples)."""
    assert expected == scheduled_instant(scheduled, interval)


class SkewedClock(datetime):
    """`datetime` whose `now` runs `skew` ahead of the real clock (behind when negative)."""

    skew = timedelta(0)

    @classmethod
    def now(cls, tz: object = None) -> "SkewedClock":  # type: ignore[override]
        real = datetime.now(UTC) + cls.skew
        return cls.fromtimestamp(real.timestamp(), tz)  # type: ignore[arg-type]


def skew_scheduler_clock(monkeypatch: pytest.MonkeyPatch, skew: timedelta) -> None:
    """Make APScheduler see a clock `skew` off the real one (the collector's stays real), so
    that its jobs fire early (skew > 0) or late (skew < 0) by the collector's clock."""
    clock = type("Clock", (SkewedClock,), {"skew": skew})
    for module in ("apscheduler.schedulers.base", "apscheduler.executors.base"):
        monkeypatch.setattr(f"{module}.datetime", clock)


def skew_before_the_next_instant(interval: int, lead: float = 0.3) -> timedelta:
    """A skew that puts the skewed clock `lead` seconds before the next multiple of `interval`
    (by the real clock): ahead of the real clock by up to an interval."""
    now = time.time()
    return timedelta(seconds=(now // interval + 1) * interval - lead - now)


async def run_scheduled(
    tmp_path: Path, interval: int, cycles: int, late_by: float = 0.0
) -> tuple[list[datetime], list[datetime], list[datetime]]:
    """Run the collector's scheduled job on a real scheduler until `cycles` cycles are spooled
    (blocking the event loop for `late_by` seconds just before the second one is due); return
    the instants the scheduler fired for, the real clock as each was submitted, and the
    instants the spool holds."""
    settings = load_settings(
        _env_file=None,
        database_url="postgresql:///unused",
        collect_interval_seconds=interval,
        gap_fill_max_hours=0,
    )
    source = SimulatedSource(["kraken"], pairs_per_exchange=2, seed=1)
    pool = AsyncConnectionPool("postgresql:///unused", open=False)
    spool = Spool(tmp_path, max_bytes=2**20)
    collector = Collector(settings, source, pool, spool)
    fired: list[datetime] = []
    ran: list[datetime] = []

    def submitted(event: JobSubmissionEvent) -> None:
        fired.append(event.scheduled_run_times[-1])
        ran.append(datetime.now(UTC))
        if late_by and len(fired) == 1:
            loop = asyncio.get_running_loop()
            due = (time.time() // interval + 1) * interval - time.time()
            loop.call_later(max(0.0, due - 0.1), time.sleep, late_by)

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_listener(submitted, EVENT_JOB_SUBMITTED)
    collector.schedule(scheduler)
    scheduler.start()
    try:
        deadline = time.monotonic() + 10 + cycles * interval
        while spool.waiting()[0] < cycles:
            assert time.monotonic() < deadline, f"{cycles} cycles not spooled"
            await asyncio.sleep(0.05)
    finally:
        scheduler.shutdown(wait=False)
    spooled = []
    while (head := spool.oldest()) is not None:
        spooled.append(decode_cycle(head[1]).at)
        spool.remove(head[0])
    spool.close()
    return fired, ran, spooled


@pytest.mark.parametrize("ahead", [True, False], ids=["early", "late"])
async def test_a_job_fired_off_the_clock_at_1_s_keeps_its_instant(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ahead: bool
) -> None:
    """At 1 s cycles, jobs firing 0.9 s early or late by the real clock are each filed under
    the instant they were scheduled for, one cycle per instant."""
    skew_scheduler_clock(monkeypatch, timedelta(seconds=0.9 if ahead else -0.9))

    fired, ran, spooled = await run_scheduled(tmp_path, 1, cycles=3)

    assert fired[:3] == spooled
    assert [timedelta(seconds=1)] * 2 == [b - a for a, b in itertools.pairwise(spooled)]
    off = [(r - f).total_seconds() for f, r in zip(fired, ran, strict=False)]
    assert all(o < -0.5 for o in off) if ahead else all(0.5 < o < 1 for o in off), off


async def test_a_job_fired_early_at_3600_s_keeps_its_instant(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """At 3600 s cycles, a job the scheduler fires up to an hour early by the collector's clock
    is filed under the hour it was scheduled for. (Late by more than the misfire grace, half an
    interval, a job is skipped, not run.)"""
    skew_scheduler_clock(monkeypatch, skew_before_the_next_instant(3600))

    fired, ran, spooled = await run_scheduled(tmp_path, 3600, cycles=1)

    assert fired == spooled
    assert 0 == spooled[0].timestamp() % 3600
    assert ran[0] < fired[0]


async def test_a_job_held_up_by_a_busy_loop_keeps_its_instant(tmp_path: Path) -> None:
    """A 1 s job the event loop starts 0.8 s late is filed under its own instant, not the next."""
    fired, ran, spooled = await run_scheduled(tmp_path, 1, cycles=3, late_by=0.9)

    assert fired[:3] == spooled
    assert [timedelta(seconds=1)] * 2 == [b - a for a, b in itertools.pairwise(spooled)]
    assert (ran[1] - fired[1]).total_seconds() > 0.5, (fired, ran)
