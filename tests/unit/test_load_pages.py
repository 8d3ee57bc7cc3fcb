"""The reads of a bulk load: every market in exactly one page, in order of id, the last page
reaching above the ids known; windows asked for taken together; waiters woken when their
window is kept or the load ends."""

import asyncio

import pytest

from api.load_pages import FIRST_MARKET_ID, LAST_MARKET_ID, LoadPages, Read


def pages_of(plan: LoadPages) -> list[Read]:
    pages = []
    while (page := plan.take()) is not None:
        pages.append(page)
    return pages


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 7, 250])
@pytest.mark.parametrize("size", [1, 2, 3, 100])
async def test_pages_take_every_market_once_in_order_and_the_last_reaches_above(
    count: int, size: int
) -> None:
    ids = [7 * n + 3 for n in range(count)]  # sparse, as ids are once markets are deleted
    pages = pages_of(LoadPages(ids, size))
    assert [market for page in pages for market in page.ids] == ids
    assert all(0 < len(page.ids) <= size for page in pages[:-1])
    assert [page.above for page in pages[:-1]] == [LAST_MARKET_ID] * (len(pages) - 1)
    assert pages[-1].above == (ids[-1] if ids else FIRST_MARKET_ID - 1)
    assert len(pages) == max(1, -(-count // size))


async def test_a_page_leaves_out_the_markets_held_already() -> None:
    """Windows asked for and kept before their page are not read again; a page all held is
    skipped, but not the last, which reaches above the ids known."""
    plan = LoadPages(list(range(1, 8)), 3)  # [1, 2, 3], [4, 5, 6], [7]
    held = {2, 4, 5, 6, 7}
    pages = []
    while (page := plan.take(held)) is not None:
        pages.append(page)
    assert pages == [Read([1, 3]), Read([], 7)]


async def test_windows_asked_for_are_taken_together_and_each_once() -> None:
    plan = LoadPages(list(range(1, 11)), 5)
    waiting = [asyncio.create_task(plan.until_kept(market)) for market in (9, 4, 9)]
    await asyncio.sleep(0)
    assert (await plan.take_asked()).ids == [9, 4]
    late = asyncio.create_task(plan.until_kept(2))
    assert (await plan.take_asked()).ids == [2]
    assert pages_of(plan)[0].ids == [1, 2, 3, 4, 5]  # the pages go on as they were
    plan.kept([9])
    await asyncio.sleep(0)
    assert [task.done() for task in waiting] == [True, False, True]
    plan.end()
    await asyncio.wait_for(asyncio.gather(*waiting, late), timeout=1)


async def test_a_window_kept_before_its_read_wakes_whoever_waits_for_it() -> None:
    plan = LoadPages(list(range(1, 4)), 3)
    waiting = asyncio.create_task(plan.until_kept(2))
    await asyncio.sleep(0)
    plan.kept([1, 2, 3])  # its page was kept first
    await asyncio.wait_for(waiting, timeout=1)
    other = asyncio.create_task(plan.until_kept(3))
    assert (await plan.take_asked()).ids == [3]  # not 2 again
    plan.end()
    await asyncio.wait_for(other, timeout=1)


async def test_nobody_waits_once_the_load_ended() -> None:
    plan = LoadPages([1], 100)
    plan.end()
    await asyncio.wait_for(plan.until_kept(1), timeout=1)
