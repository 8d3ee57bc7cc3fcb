"""The spool on disk: cycles kept in order, bounded, and surviving a reopen."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.report import CycleReport, ExchangeOutcome
from collector.spool import Evicted, Spool, decode_cycle, encode_cycle
from collector.ticks import Tick

AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


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
    size = len(encode_cycle(cycle(AT)))
    spool = Spool(tmp_path, max_bytes=2 * size + size // 2)

    evicted = [spool.put(cycle(AT + n * MINUTE)) for n in range(3)]

    assert [Evicted(), Evicted(), Evicted(1, 10)] == evicted
    assert [AT + MINUTE, AT + 2 * MINUTE] == kept(spool)


def test_the_cycle_being_written_is_not_dropped(tmp_path: Path) -> None:
    """The head the writer took stays while newer ones push older waiting cycles out."""
    size = len(encode_cycle(cycle(AT)))
    spool = Spool(tmp_path, max_bytes=2 * size)
    spool.put(cycle(AT))
    spool.put(cycle(AT + MINUTE))
    head = spool.oldest()
    assert head is not None

    spool.put(cycle(AT + 2 * MINUTE))

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
