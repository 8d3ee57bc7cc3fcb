"""Requests waiting for the listener's next sync round (api/cache.py), each at most until a
deadline of its own.

Every request served from memory waits for a round, thousands a second. Each used to wait
under its own `asyncio.timeout` (a Timeout object, and a timer scheduled and cancelled per
request); here one timer serves them all: it fires at the oldest waiter's deadline, answers
False to every waiter whose deadline has passed, and is set again for the next. Deadlines come
in arrival order (each is the earlier of the arrival plus a constant and the listener's last
answer plus a constant, and both grow), so the waiters first due are always the oldest.
"""

import asyncio
import time
from collections import deque


class Waiters:
    """Futures answered True by the round they wait for, False at their deadline or when the
    listener stops."""

    def __init__(self) -> None:
        self._next: list[asyncio.Future[bool]] = []  # waiting for a round not yet begun
        # Every waiter not yet known to be answered, oldest first, with its deadline.
        self._pending: deque[tuple[float, asyncio.Future[bool]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __bool__(self) -> bool:
        """Whether a request waits for a round not yet begun."""
        return bool(self._next)

    def add(self, deadline: float) -> asyncio.Future[bool]:
        """A future for the next round's answer, False at `deadline` (time.monotonic()) if no
        round answered it before."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._next.append(waiter)
        self._pending.append((deadline, waiter))
        if self._timer is None:
            self._timer = loop.call_later(deadline - time.monotonic(), self._expire)
        return waiter

    def take(self) -> list[asyncio.Future[bool]]:
        """The waiters a round beginning now is for."""
        batch, self._next = self._next, []
        return batch

    def answer(self, batch: list[asyncio.Future[bool]], synced: bool) -> None:
        """Answer a round's waiters (those still waiting: not past their deadline, not
        cancelled)."""
        for waiter in batch:
            if not waiter.done():
                waiter.set_result(synced)
        pending = self._pending
        while pending and pending[0][1].done():
            pending.popleft()
        if not pending and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def answer_all(self, synced: bool) -> None:
        """Answer every waiter, whether its round has begun or not."""
        self._next = []
        self.answer([waiter for _, waiter in self._pending], synced)

    def _expire(self) -> None:
        self._timer = None
        pending, now = self._pending, time.monotonic()
        while pending and (pending[0][1].done() or pending[0][0] <= now):
            _, waiter = pending.popleft()
            if not waiter.done():
                waiter.set_result(False)
        if pending:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(pending[0][0] - now, self._expire)
