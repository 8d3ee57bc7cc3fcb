"""Reading an exchange's Retry-After header."""

from datetime import UTC, datetime

import pytest

from collector.sources.live import retry_after_seconds

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"Retry-After": "Sat, 31 Jan 2026 12:00:30 GMT"}, 30.0),
        ({"Retry-After": "Sat, 31 Jan 2026 11:00:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(
    headers: dict[str, str] | None, expected: float | None
) -> None:
    """Seconds are taken as they are, a date as the time until it; anything else is ignored."""
    assert expected == retry_after_seconds(headers, NOW)
