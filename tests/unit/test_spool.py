"""The spool on disk: cycles kept in order, bounded, and surviving a reopen."""

import os
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.report import CycleReport, ExchangeOutcome
from collector.spool import (
    SPOOL_FILE,
    SPOOL_SLACK_BYTES,
    Evicted,
    Spool,
    SpoolInUse,
    SpoolUnusable,
    decode_cycle,
    encode_cycle,
)
from collector.ticks import Tick

AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
PAGE = 4096
# A cycle of 1,000 ticks takes 7 pages (25 kB); a put keeps room for 3 x 8 of them (the cycle,
# and the journal's copies). With 34 pages, two cycles wait when a third comes: 14 + 24 > 34
# drops one, 7 + 24 <= 34 lets the third in.
BIG = 1000
TWO_BIG_CYCLES = 34 * PAGE


def cycle(at: datetime, pairs: int = 10) -> CycleReport:
    """A cycle of `pairs` kraken ticks at `at`, and a failed okx."""
    sent = at - timedelta(milliseconds=1500)
    ticks = [
        Tick(at, "kraken", f"tok{n}usd", f"TOK{n}", "USD", 1.5 + n, sent if n % 2 else None)
        for n in range(pairs)
    ]
    outcomes = [
        ExchangeOutcome("kraken", ticks, dropped=1, attempts=2, fetch_seconds=0.25),
        ExchangeOutcome("okx", error="RequestTimeout: okx GET …", attempts=3, fetch_seconds=5.0),
    ]
    return CycleReport(at, outcomes)


def kept(spool: Spool) -> list[datetime]:
    """The instants of the waiting cycles, oldest first, as the writer would take them."""
    instants = []
    while (head := spool.oldest()) is not None:
        seq, body = head
        instants.append(decode_cycle(body).at)
        spool.remove(seq)
    return instants


def test_a_cycle_comes_back_as_it_was_encoded() -> None:
    """Ticks, exchange times, drops, attempts and errors survive encoding."""
    report = cycle(AT)
    assert report == decode_cycle(encode_cycle(report))


def test_cycles_are_taken_oldest_first_and_survive_a_reopen(tmp_path: Path) -> None:
    """Cycles kept before a close are there after it, in the order they came."""
    spool = Spool(tmp_path, max_bytes=2**20)
    for n in range(3):
        spool.put(cycle(AT + n * MINUTE))
    spool.close()

    reopened = Spool(tmp_path, max_bytes=2**20)
    assert (3, 30) == reopened.waiting()
    assert [AT, AT + MINUTE, AT + 2 * MINUTE] == kept(reopened)
    assert (0, 0) == reopened.waiting()
    assert 0 == reopened.bytes


def test_a_full_spool_drops_the_oldest_cycles(tmp_path: Path) -> None:
    """With room for two cycles, a third pushes out the first, counted in ticks."""
    spool = Spool(tmp_path, max_bytes=TWO_BIG_CYCLES)

    evicted = [spool.put(cycle(AT + n * MINUTE, BIG)) for n in range(3)]

    assert [Evicted(), Evicted(), Evicted(1, BIG)] == evicted
    assert [AT + MINUTE, AT + 2 * MINUTE] == kept(spool)


def test_the_cycle_being_written_is_not_dropped(tmp_path: Path) -> None:
    """The head the writer took stays while newer ones push older waiting cycles out."""
    spool = Spool(tmp_path, max_bytes=TWO_BIG_CYCLES)
    spool.put(cycle(AT, BIG))
    spool.put(cycle(AT + MINUTE, BIG))
    head = spool.oldest()
    assert head is not None

    spool.put(cycle(AT + 2 * MINUTE, BIG))

    spool.remove(head[0])
    assert [AT + 2 * MINUTE] == kept(spool)


def test_a_cycle_set_aside_leaves_the_queue_and_waits_to_be_recorded(tmp_path: Path) -> None:
    """A set-aside cycle keeps its body, error and traceback until the database records it."""
    spool = Spool(tmp_path, max_bytes=2**20)
    spool.put(cycle(AT))
    spool.put(cycle(AT + MINUTE))
    head = spool.oldest()
    assert head is not None

    spool.set_aside(head[0], "DataError: bad", "Traceback …")

    ((aside,),) = [spool.unrecorded()]
    assert (AT, 10, "DataError: bad", "Traceback …") == (
        aside.at,
        aside.ticks,
        aside.error,
        aside.traceback,
    )
    assert cycle(AT) == decode_cycle(aside.body)
    spool.mark_recorded(aside.seq)
    assert ([], 1, [AT + MINUTE]) == (spool.unrecorded(), spool.set_aside_count(), kept(spool))


def spool_bytes(directory: Path) -> int:
    """The spool's file and its journal, in bytes."""
    names = (SPOOL_FILE, f"{SPOOL_FILE}-journal", f"{SPOOL_FILE}-wal", f"{SPOOL_FILE}-shm")
    return sum(os.stat(directory / n).st_size for n in names if (directory / n).exists())


@pytest.mark.parametrize("max_kb", [256, 1024, 4096])
def test_the_files_stay_within_the_bound_and_a_constant(tmp_path: Path, max_kb: int) -> None:
    """Cycles of 10 to 5,000 ticks, mixed, put through a spool that also drains now and then:
    its file and journal, sampled during every transaction too, never pass the bound plus
    SPOOL_SLACK_BYTES."""
    spool = Spool(tmp_path, max_bytes=max_kb * 1024)
    rng = random.Random(max_kb)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, spool_bytes(tmp_path))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for n in range(150):
            spool.put(cycle(AT + n * MINUTE, rng.choice([10, 100, 1000, 5000])))
            if n % 30 > 25:
                kept(spool)
    finally:
        done.set()
        sampler.join()
    spool.close()

    assert 0 < peak <= max_kb * 1024 + SPOOL_SLACK_BYTES, peak


def test_a_second_spool_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    """While one Spool holds a directory another is refused with a one-line reason naming the
    holder; once the first closes, the directory opens again."""
    first = Spool(tmp_path, max_bytes=2**20)
    with pytest.raises(SpoolInUse) as refused:
        Spool(tmp_path, max_bytes=2**20)
    first.close()
    Spool(tmp_path, max_bytes=2**20).close()

    assert f"pid {os.getpid()}" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_file_in_the_way_of_the_spool_is_refused_in_one_line(tmp_path: Path) -> None:
    """A SPOOL_DIR that is a file is refused with SpoolUnusable, naming it and why."""
    (tmp_path / "spool").write_text("")
    with pytest.raises(SpoolUnusable) as refused:
        Spool(tmp_path / "spool", max_bytes=2**20)

    assert f"SPOOL_DIR {tmp_path / 'spool'} cannot hold the spool: it is not a directory" == str(
        refused.value
    )
