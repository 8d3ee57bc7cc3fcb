"""Instants as microseconds since the Unix epoch: exact, compact, and what the collector's
writer and the API's price windows exchange through the database's announcements."""

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def micros_of(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime, exactly."""
    return (moment - EPOCH) // MICROSECOND


def instant(micros: int) -> datetime:
    """The UTC datetime `micros` microseconds after the epoch, exactly."""
    return EPOCH + micros * MICROSECOND


def floor_to(moment: datetime, width: timedelta) -> datetime:
    """The start, in UTC, of the span of `width` holding `moment`: `moment` floored to a
    multiple of `width` since the epoch, exactly (a cycle's instant, a candle's bucket)."""
    return EPOCH + (moment - EPOCH) // width * width
