"""A cycle's instant: the scheduled multiple of the interval a run belongs to."""

from datetime import UTC, datetime

import pytest

from collector.cycle import cycle_instant


@pytest.mark.parametrize(
    ("now", "interval", "expected"),
    [
        (
            datetime(2026, 1, 31, 12, 0, 0, 5000, tzinfo=UTC),
            60,
            datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        ),
        (
            datetime(2026, 1, 31, 12, 0, 42, tzinfo=UTC),
            60,
            datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        ),
        (
            datetime(2026, 1, 31, 11, 59, 59, 600000, tzinfo=UTC),
            60,
            datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        ),
        (
            datetime(2026, 1, 31, 12, 7, 30, tzinfo=UTC),
            300,
            datetime(2026, 1, 31, 12, 5, tzinfo=UTC),
        ),
    ],
)
def test_instant_is_the_interval_multiple_the_run_belongs_to(
    now: datetime, interval: int, expected: datetime
) -> None:
    """Late runs keep their slot, and a run a hair early is not filed a cycle too soon."""
    assert expected == cycle_instant(now, interval)
