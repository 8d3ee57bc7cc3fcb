"""First answers built in a process of their own (api/prebuild.py), as the role `api`: they are
the bytes a request would build; one for a window that changed since it was handed over, or
was dropped, or was answered meanwhile, is not kept; the process ends with the worker, however
the worker ends, and a worker whose process is gone goes on without it."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from api.announcements import MARKETS, Announcement
from api.prebuild import Prebuilder, build
from api.windows import Place, PriceWindows, Window

REPO = Path(__file__).resolve().parents[2]


async def loaded(api_url: str) -> PriceWindows:
    """Every window of the simulated history, loaded as the API loads them."""
    windows = PriceWindows(2**30)
    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as conn:
        await windows.start(conn)
    await windows.load(api_url)
    assert len(windows) == 8
    return windows


def now_us() -> int:
    return time.time_ns() // 1000


def built_here(window: Window, place: Place) -> Window:
    """The window's answer as a request builds it, on a copy of the window."""
    copy = Window(window.market_id, window.exchange, window.symbol, window.times, window.prices)
    copy.version = window.version
    copy.answer_for(*copy.span(now_us()), place)
    return copy


def spawned(pid: int) -> set[int]:
    """The processes multiprocessing spawned from `pid`."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"multiprocessing.spawn" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(int(child))
    return found


def running(pid: int) -> bool:
    """Whether the process is there and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def until(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


async def test_answers_built_beside_are_the_bytes_a_request_builds(
    history: str, api_url: str
) -> None:
    windows = await loaded(api_url)
    prebuilder = Prebuilder(windows)
    try:
        prebuilder.offer(windows.held())
        await until(lambda: all(window.answer is not None for window in windows.held()))
    finally:
        prebuilder.close()
    for window in windows.held():
        place = windows.place(window.market_id)
        expected = built_here(window, place).answer
        assert window.answer is not None
        assert expected is not None
        assert window.answer == expected
        assert window.answer.gzipped == expected.gzipped
        assert windows.answer(window, *window.span(now_us()), place) is window.answer


async def test_an_answer_built_beside_is_kept_only_for_its_window_as_it_was(
    history: str, api_url: str
) -> None:
    """Answers built for four windows; meanwhile one market is renamed and one deleted (as
    the owner, the change announced and applied as the listener does), and one window is
    answered by a request: only the fourth answer is kept."""
    windows = await loaded(api_url)
    renamed, deleted, answered, kept = windows.held()[:4]
    jobs = [
        (w.market_id, w.version, w.exchange, w.symbol, w.times, w.prices,
         *w.span(now_us()), windows.place(w.market_id))
        for w in (renamed, deleted, answered, kept)
    ]  # fmt: skip
    answers = build(jobs)
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as owner:
        await owner.execute(
            "UPDATE markets SET symbol = 'zzzusd' WHERE id = %s", [renamed.market_id]
        )
        await owner.execute("DELETE FROM markets WHERE id = %s", [deleted.market_id])
        windows.announce(MARKETS)
        await windows.apply(owner, Announcement(MARKETS, None), now_us())
    answered.answer_for(*answered.span(now_us()), windows.place(answered.market_id))
    before, held_bytes = answered.answer, windows.held_bytes

    results = list(map(windows.adopt, (renamed, deleted, answered, kept), answers))

    assert results == [False, False, False, True]
    assert renamed.answer is None
    assert deleted.answer is None
    assert answered.answer is before
    assert kept.answer is answers[3]
    assert windows.held_bytes == held_bytes + answers[3].held_bytes


def test_the_process_ends_with_the_worker_killed() -> None:
    """A worker killed outright (SIGKILL: no shutdown runs) leaves no process behind."""
    script = (
        "import asyncio, time\n"
        "from array import array\n"
        "from api.prebuild import Prebuilder\n"
        "from api.windows import PriceWindows, Window\n"
        "async def main():\n"
        "    windows = PriceWindows(2**20)\n"
        "    windows.serving = True\n"
        "    minute_ago = time.time_ns() // 1000 - 60_000_000\n"
        "    window = Window(1, 'kraken', 'btcusd', array('q', [minute_ago]), array('d', [1.5]))\n"
        "    windows.admit(window, windows.version)\n"
        "    prebuilder = Prebuilder(windows)\n"
        "    prebuilder.offer(windows.held())\n"
        "    while window.answer is None:\n"
        "        await asyncio.sleep(0.05)\n"
        "    print('ready', flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "    prebuilder.close()\n"
        "asyncio.run(main())\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE)
    with worker:
        try:
            assert worker.stdout is not None
            assert worker.stdout.readline() == b"ready\n"
            helpers = spawned(worker.pid)
            assert helpers, "no process was started"
        finally:
            worker.kill()  # SIGKILL
        worker.wait()
        deadline = time.monotonic() + 10
        while any(map(running, helpers)):
            assert time.monotonic() < deadline, f"{helpers} outlived the worker"
            time.sleep(0.1)


async def test_with_its_process_gone_the_worker_builds_its_answers_itself(
    history: str, api_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    windows = await loaded(api_url)
    first, *others = windows.held()
    prebuilder = Prebuilder(windows)
    try:
        prebuilder.offer([first])
        await until(lambda: first.answer is not None)
        for pid in spawned(os.getpid()):
            os.kill(pid, signal.SIGKILL)
        prebuilder.offer(others)
        await until(lambda: "first answers built only by requests" in caplog.text)
    finally:
        prebuilder.close()
    assert all(window.answer is None for window in others)
    window = others[0]
    place = windows.place(window.market_id)
    assert windows.answer(window, *window.span(now_us()), place) == built_here(window, place).answer
