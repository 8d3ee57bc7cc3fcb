"""Requests waiting for a sync round, each until its own deadline at most (api/waiters.py)."""

import time

from api.waiters import Waiters


async def test_a_round_answers_the_waiters_it_took_and_not_those_that_came_after() -> None:
    """A round is for the requests that waited when it began; later ones wait for the next."""
    waiters = Waiters()
    far = time.monotonic() + 60
    first, second = waiters.add(far), waiters.add(far)
    batch = waiters.take()
    later = waiters.add(far)
    waiters.answer(batch, True)
    assert [True, True] == [await first, await second]
    assert not later.done()
    assert waiters  # the later request still wants a round
    waiters.answer(waiters.take(), True)
    assert await later


async def test_a_waiter_past_its_deadline_gets_false_while_later_ones_still_wait() -> None:
    """One timer answers each waiter False at its own deadline, whether its round has begun
    or not, and leaves those not yet due waiting."""
    waiters = Waiters()
    now = time.monotonic()
    soon = waiters.add(now + 0.05)
    in_round = waiters.take()
    queued = waiters.add(now + 0.1)
    later = waiters.add(now + 60)
    assert [False, False] == [await soon, await queued]
    assert time.monotonic() >= now + 0.1
    assert not later.done()
    waiters.answer(in_round, True)  # a round that ends after its waiters' deadlines
    waiters.answer(waiters.take(), True)
    assert await later


async def test_a_cancelled_request_leaves_the_others_answered() -> None:
    """A request that stops waiting (its client gone) does not disturb the round's answer."""
    waiters = Waiters()
    far = time.monotonic() + 60
    gone, staying = waiters.add(far), waiters.add(far)
    gone.cancel()
    waiters.answer(waiters.take(), True)
    assert await staying


async def test_a_listener_that_stops_answers_every_waiter_false() -> None:
    """Losing the listener answers both the round under way and the requests queued after it."""
    waiters = Waiters()
    far = time.monotonic() + 60
    in_round = waiters.add(far)
    waiters.take()
    queued = waiters.add(far)
    waiters.answer_all(False)
    assert [False, False] == [await in_round, await queued]
    assert not waiters
