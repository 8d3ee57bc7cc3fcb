"""Instants: floored to a span's multiples since the epoch, exactly, in UTC."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from datatracker.instants import floor_to

NOON = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("moment", "width", "expected"),
    [
        (NOON, timedelta(minutes=5), NOON),
        (NOON - US, timedelta(seconds=1), NOON - timedelta(seconds=1)),
        (
            NOON + timedelta(minutes=7, seconds=30),
            timedelta(minutes=5),
            NOON + timedelta(minutes=5),
        ),
        (
            NOON + timedelta(seconds=15),
            timedelta(seconds=7),
            datetime(2026, 1, 31, 12, 0, 13, tzinfo=UTC),
        ),
        (NOON - US, timedelta(hours=1), NOON - timedelta(hours=1)),
        (
            datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
            timedelta(minutes=1),
            datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        ),
    ],
)
def test_a_moment_is_floored_to_the_span_holding_it(
    moment: datetime, width: timedelta, expected: datetime
) -> None:
    """The start of the span holding `moment`, to the microsecond (a hair before a boundary
    belongs to the span before), spans counted from the epoch (at 7 s, 12:00:13 is one of them)."""
    assert expected == floor_to(moment, width)


def test_a_moment_in_another_zone_gives_the_same_instant_in_utc() -> None:
    """A moment with another UTC offset is floored as the same instant, answered in UTC."""
    moment = NOON.astimezone(timezone(timedelta(hours=5, minutes=30))) + timedelta(seconds=42)

    floored = floor_to(moment, timedelta(minutes=1))

    assert (NOON, UTC) == (floored, floored.tzinfo)
