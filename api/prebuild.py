"""First answers built in a process of their own, while the worker answers requests.

A window's first answer costs ~0.6-0.9 ms of CPU (its JSON, deflated in parts, its stdv and
ETag: api/windows.py, Window.answer_for). After a bulk load of 10,000 windows that is 6-9 s of
the worker's time, spent a request at a time, while the machine's other core idles (measured
at 10k pairs under wrk: the machine ~52 % busy on 2 cores from the load's end to the 20th
second). A `Prebuilder` hands the windows held without an answer to one more process, a
batch at a time, and the worker keeps each answer built there whose window has not changed
since (PriceWindows.adopt). A request that comes first builds its answer itself, as before;
the answers are the same bytes either way (Window.answer_for is a function of the window's
columns, span and place).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from api.parent import exit_with_parent
from api.windows import Answer, Place, Window

if TYPE_CHECKING:
    from array import array

    from api.windows import PriceWindows

# Windows a batch: ~40 ms of the other process's work, ~0.6 MB of answers to take back.
BATCH_WINDOWS = 50
# Batches handed over and not yet taken back: the next is ready as one is taken.
IN_FLIGHT = 2

log = logging.getLogger(__name__)

# What the other process needs of a window: its id, version, names, columns, span, place.
Job = tuple[int, int, str, str, "array[int]", "array[float]", int, int, Place]


def build(jobs: list[Job]) -> list[Answer]:
    """The answers of these windows (in the other process)."""
    answers = []
    for market_id, version, exchange, symbol, times, prices, lo, hi, place in jobs:
        window = Window(market_id, exchange, symbol, times, prices)
        window.version = version
        answers.append(window.answer_for(lo, hi, place))
    return answers


def _serve() -> None:
    """The other process's start: Ctrl-C is the worker's to handle, and it ends when the
    worker is gone, however the worker ended (api/parent.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()


class Prebuilder:
    """One process that builds the first answers of a worker's windows, started by the first
    offer: at the end of the first load, when the database has stopped needing the core
    its start-up (~0.3 s of CPU) takes."""

    def __init__(self, windows: PriceWindows) -> None:
        self._windows = windows
        # spawn, not fork: a fork would copy the worker's event loop, threads and sockets.
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(1, context, initializer=_serve)
        self._offered: deque[Window] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._broken = False

    def close(self) -> None:
        """Stop, waiting for a batch under way (~40 ms): the process's queues are then cleaned
        up (left to the exit, multiprocessing's resource tracker warns of leaked semaphores)."""
        if self._task is not None:
            self._task.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def offer(self, windows: Iterable[Window]) -> None:
        """Build these windows' answers beside, those a request has not built first (nothing,
        once the process is gone)."""
        if self._broken:
            return
        self._offered.extend(windows)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._build())

    def _run(self, jobs: list[Job]) -> asyncio.Future[list[Answer]]:
        return asyncio.get_running_loop().run_in_executor(self._pool, build, jobs)

    def _batch(self, now_us: int) -> tuple[list[Window], list[Job]]:
        """The next windows offered that are still held without an answer, and their jobs."""
        batch, jobs, windows = [], list[Job](), self._windows
        while self._offered and len(jobs) < BATCH_WINDOWS:
            window = self._offered.popleft()
            if not windows.unanswered(window):
                continue
            lo, hi = window.span(now_us)
            if lo == hi:
                continue
            batch.append(window)
            jobs.append(
                (window.market_id, window.version, window.exchange, window.symbol,
                 window.times, window.prices, lo, hi, windows.place(window.market_id))
            )  # fmt: skip
        return batch, jobs

    async def _build(self) -> None:
        """Hand over what is offered, a batch at a time, and keep the answers that still hold."""
        pending: deque[tuple[asyncio.Future[list[Answer]], list[Window]]] = deque()
        started, kept = time.monotonic(), 0
        try:
            while True:
                while len(pending) < IN_FLIGHT:
                    batch, jobs = self._batch(time.time_ns() // 1000)
                    if not jobs:
                        break
                    pending.append((self._run(jobs), batch))
                if pending:
                    future, batch = pending.popleft()
                    kept += sum(map(self._windows.adopt, batch, await future))
                    continue
                if kept:
                    seconds = time.monotonic() - started
                    log.info("first answers built beside: %d in %.1f s", kept, seconds)
                self._wake.clear()
                await self._wake.wait()
                started, kept = time.monotonic(), 0
        except BrokenProcessPool as error:
            self._broken, self._task = True, None
            self._offered.clear()  # not kept from the garbage collector after each load
            log.warning("first answers built only by requests from now on: %s", error)
