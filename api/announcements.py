"""What a `datatracker_changes` announcement says, read as hostile input.

PostgreSQL lets any role that can connect NOTIFY any channel, with any payload up to 8,000
bytes, so a payload proves nothing about who sent it or what changed. The API treats it as a
hint to read the database again, never as data: what it serves always comes from the tables,
which the readers cannot change. The triggers of migrations 0001, 0004 and 0005 send exactly
`ticks`, `ticks <first µs>/<last µs>`, `ranking` and `markets`; apply_retention() (migration
0008) sends `storage` when it dropped chunks of ticks, which the API follows by reading
ticks_storage() as it does every half second anyway. Anything else is malformed and
read as a change to everything (every kept value dropped, the markets and the ranking read
again); a `ticks` span that is not two sane instants as a write to ticks that names no span
(every window dropped). Either costs the API some reading, never a wrong answer.
"""

import logging
import re
import time
from dataclasses import dataclass

TICKS = "ticks"
RANKING = "ranking"
MARKETS = "markets"
# Chunks of ticks dropped (apply_retention(): migration 0008), or seen dropped or compressed
# by the listener's own check (api/cache.py).
STORAGE = "storage"
# Any payload that is none of the triggers': handled as a change to everything.
UNKNOWN = "unknown"

# `ticks 1733450400000000/1733450460000000`: at most 19 digits each (an int8), no sign.
_TICKS_SPAN = re.compile(r"ticks ([0-9]{1,19})/([0-9]{1,19})", re.ASCII)
_LONGEST = len("ticks ") + 2 * 19 + 1
# A write names instants at most one collection interval (an hour at most) ahead of its
# clock; a day allows for clocks that disagree. Older than the raw retention, the database
# keeps no tick.
AHEAD_US = 86_400 * 1_000_000
# At most one line a minute about malformed announcements, with how many came.
COMPLAIN_EVERY_SECONDS = 60.0
# How much of a malformed payload a log line shows (escaped: it may hold anything).
SHOWN_CHARS = 40

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Announcement:
    """A change as the API handles it: its `source` (TICKS, RANKING, MARKETS, STORAGE or
    UNKNOWN), for ticks the `span` of instants written (µs) when one was named and sane,
    and whether the payload was `malformed`."""

    source: str
    span: tuple[int, int] | None = None
    malformed: bool = False


def parse(payload: str, now_us: int, retention_us: int) -> Announcement:
    """What `payload` announces, judged at `now_us` against the raw retention: a span must
    run forward and lie between the retention horizon and a day ahead."""
    if payload in (TICKS, RANKING, MARKETS, STORAGE):
        return Announcement(payload)
    if len(payload) > _LONGEST or not (match := _TICKS_SPAN.fullmatch(payload)):
        return Announcement(UNKNOWN, malformed=True)
    first, last = int(match[1]), int(match[2])
    if not now_us - retention_us <= first <= last <= now_us + AHEAD_US:
        return Announcement(TICKS, malformed=True)
    return Announcement(TICKS, (first, last))


class Complaints:
    """Logs malformed announcements at most once per COMPLAIN_EVERY_SECONDS, with a count."""

    def __init__(self) -> None:
        self._unsaid = 0
        self._said_at = -COMPLAIN_EVERY_SECONDS

    def malformed(self, payload: str) -> None:
        """Count a malformed `payload`; say so if the last line is a minute old."""
        self._unsaid += 1
        now = time.monotonic()
        if now - self._said_at < COMPLAIN_EVERY_SECONDS:
            return
        log.warning(
            "ignored %d malformed announcement(s) on datatracker_changes (%d bytes, starting %s);"
            " read again whatever they could concern. Any role that can connect may send them",
            self._unsaid,
            len(payload.encode()),
            ascii(payload[:SHOWN_CHARS]),
        )
        self._unsaid = 0
        self._said_at = now
