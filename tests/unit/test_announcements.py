"""Announcements on datatracker_changes are read as hostile input: only the triggers' exact
forms count, anything else is malformed and handled as the widest change."""

import logging
import random

import pytest

from api import announcements
from api.announcements import (
    MARKETS,
    RANKING,
    STORAGE,
    TICKS,
    UNKNOWN,
    Announcement,
    Complaints,
    parse,
)

NOW = 1_765_000_000_000_000  # µs: December 2025
DAY = 86_400 * 1_000_000
RETENTION = 7 * DAY


@pytest.mark.parametrize("payload", [TICKS, RANKING, MARKETS, STORAGE])
def test_the_triggers_plain_payloads_are_read_as_they_are(payload: str) -> None:
    """`ticks`, `ranking`, `markets` and apply_retention()'s `storage` are the changes they
    name."""
    assert Announcement(payload) == parse(payload, NOW, RETENTION)


@pytest.mark.parametrize(
    ("first", "last"),
    [(NOW - 60_000_000, NOW), (NOW, NOW), (NOW - RETENTION, NOW - RETENTION + 1), (NOW, NOW + DAY)],
)
def test_a_sane_span_is_read(first: int, last: int) -> None:
    """A span that runs forward between the retention horizon and a day ahead is kept."""
    assert Announcement(TICKS, (first, last)) == parse(f"ticks {first}/{last}", NOW, RETENTION)


@pytest.mark.parametrize(
    "span",
    [
        "9223372036854775807/9223372036854775807",  # int8's maximum: far in the future
        f"{NOW}/{NOW - 1}",  # backwards
        f"{NOW - RETENTION - 1}/{NOW}",  # older than the retention
        f"{NOW}/{NOW + DAY + 1}",  # more than a day ahead
        f"0/{NOW}",  # huge
        "0/0",
    ],
)
def test_a_span_out_of_bounds_is_a_write_that_names_none(span: str) -> None:
    """A span of numbers that no writer sends is malformed: a change to every tick."""
    assert Announcement(TICKS, None, malformed=True) == parse(f"ticks {span}", NOW, RETENTION)


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "ticks 99999999999999999999999/99999999999999999999999",  # the OverflowError
        "Ticks",
        "ticks ",
        "ticks garbage",
        f"ticks {NOW}",
        f"ticks -{NOW}/{NOW}",
        f"ticks +{NOW}/{NOW}",
        f"ticks {NOW}/{NOW}/{NOW}",
        f"ticks  {NOW}/{NOW}",
        f"ticks {NOW}/{NOW} ",
        f"ticks {NOW}/{NOW}\n",
        "ticks 1_765_000_000_000_000/1_765_000_000_000_000",  # int() would take it
        "ticks \u0661\u0662/\u0661\u0662",  # Arabic-Indic digits: int() would take them too
        "ticks 00000000000000000001765000000000000000/1765000000000000000",
        "ranking now",
        "markets\x00",
        "storage ",
        "unknown",
        "x" * 7999,
        "ticks " + "9" * 7990,
    ],
)
def test_anything_else_is_malformed_and_changes_everything(payload: str) -> None:
    """Every other payload is malformed: read as a change to everything."""
    assert Announcement(UNKNOWN, None, malformed=True) == parse(payload, NOW, RETENTION)


def test_random_payloads_never_raise_and_never_name_an_insane_span() -> None:
    """10,000 random payloads up to PostgreSQL's 8,000 bytes: parse always answers, and any
    span it returns runs forward within the bounds."""
    rng = random.Random(17)
    alphabet = "ticks rankingmarkets0123456789/-+_ \n\x00\u0661é"
    for _ in range(10_000):
        size = rng.choice([rng.randint(0, 60), rng.randint(0, 8000)])
        head = rng.choice(["", "ticks ", f"ticks {NOW}/", "ranking"])
        payload = head + "".join(rng.choices(alphabet, k=size))
        change = parse(payload, NOW, RETENTION)
        if change.span is not None:
            first, last = change.span
            assert NOW - RETENTION <= first <= last <= NOW + DAY


def test_malformed_announcements_are_logged_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood gives one line a minute, each counting what came since the last, the payload
    shown short and escaped."""
    clock = [1000.0]
    monkeypatch.setattr(announcements.time, "monotonic", lambda: clock[0])
    complaints = Complaints()
    with caplog.at_level(logging.WARNING, logger="api.announcements"):
        for _ in range(500):
            complaints.malformed("evil\n" + "x" * 100)
            clock[0] += 0.1  # 50 s in all
        first_minute = len(caplog.records)
        clock[0] += 11  # a minute and a second after the first line
        complaints.malformed("ticks 1/0")

    assert 1 == first_minute
    assert 2 == len(caplog.records)
    assert caplog.records[0].getMessage().startswith("ignored 1 malformed announcement(s)")
    assert "'evil\\nxxxxxxxxxx" in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage()
    assert caplog.records[1].getMessage().startswith("ignored 500 malformed announcement(s)")
