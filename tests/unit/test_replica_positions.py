"""Comparing WAL positions, and sharing one question among the reads that wait on it
(api/replica.py)."""

import asyncio

import pytest

from api.replica import EVERYTHING, Shared, reached

PAGE = 8192
SEGMENT = 16 * 2**20


@pytest.mark.parametrize(
    ("replayed", "target", "expected"),
    [
        (1000, 1000, True),  # replayed up to the position itself
        (1008, 1000, True),
        (992, 1000, False),
        (5 * PAGE, 5 * PAGE + 24, True),  # the insert position past a page's short header
        (SEGMENT, SEGMENT + 40, True),  # past a segment's first page's long header
        (5 * PAGE - 8, 5 * PAGE + 24, False),  # the record before the page not yet replayed
        (5 * PAGE, 5 * PAGE + 48, False),  # a record on that page not yet replayed
        (EVERYTHING, 2**63, True),  # a primary, or a standby promoted since
        (-EVERYTHING, 0, False),  # not asked yet
    ],
)
def test_a_standby_has_reached_a_position_once_its_replay_passes_it(
    replayed: float, target: int, expected: bool
) -> None:
    """A replay at or past the primary's position has reached it; so has one ending where
    the page begins whose header the position points past (no record ends in a header)."""
    assert expected == reached(replayed, target, PAGE)


async def test_one_question_answers_every_caller_that_came_before_it_was_sent() -> None:
    """Callers that come together share one question; a caller that comes while it is
    asked gets the next one, never an answer that may predate it."""
    asked = 0
    release = asyncio.Event()

    async def ask() -> int:
        nonlocal asked
        asked += 1
        await release.wait()
        return asked

    shared = Shared(ask)
    first = [asyncio.create_task(shared()) for _ in range(3)]
    await asyncio.sleep(0)
    late = asyncio.create_task(shared())
    await asyncio.sleep(0)
    release.set()
    assert [1, 1, 1] == await asyncio.gather(*first)
    assert 2 == await late
    assert 2 == asked


async def test_a_failed_question_fails_its_callers_and_the_next_is_asked_again() -> None:
    """An error reaches every caller of that question; the next caller asks again."""
    answers = iter([OSError("down"), 7])

    async def ask() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    shared = Shared(ask)
    with pytest.raises(OSError, match="down"):
        await shared()
    assert 7 == await shared()
