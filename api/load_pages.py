"""What a bulk load of the windows reads next, and who waits for which window.

A load reads every market's window a page of markets at a time, in order of id, on a
connection of its own (api/windows.py: PriceWindows.load). A request for a pair whose window is
not held yet does not read it from SQL meanwhile: that would cost the API and the database
more (~1.5 ms of the API's CPU a request, against ~0.06 ms a window read in bulk) and slow
the load that every other request waits for. It asks for its window instead, and waits until
it is kept: a reader of its own takes every window asked for since its last read at once, and a
second takes those asked for while the first reads.
"""

import asyncio
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

# markets.id is an integer: every market's id is between these.
FIRST_MARKET_ID, LAST_MARKET_ID = -(2**31), 2**31 - 1


@dataclass(frozen=True, slots=True)
class Read:
    """The markets one read of the load takes: those of these ids, and any whose id is above
    `above` (on the last page: a market added since the ids were known)."""

    ids: list[int]
    above: int = LAST_MARKET_ID


class LoadPages:
    """The reads of one load: the pages of markets in order, and the windows asked for; each
    window asked for is marked kept once it is (or once the load ended)."""

    def __init__(self, ids: Sequence[int], size: int) -> None:
        """Pages of `size` markets of these ids (sorted), the last reaching above them."""
        pages = [list(ids[first : first + size]) for first in range(0, len(ids), size)] or [[]]
        self._pages = [Read(page) for page in pages[:-1]]
        self._pages.append(Read(pages[-1], ids[-1] if ids else FIRST_MARKET_ID - 1))
        self._pages.reverse()  # taken from the end
        self._asked: dict[int, None] = {}  # not read yet, in the order asked
        self._asking = asyncio.Event()  # set while some are
        self._waited: dict[int, asyncio.Event] = {}  # not kept yet
        self._ended = False

    def take(self, held: Container[int] = ()) -> Read | None:
        """The next page, less the markets in `held` (their windows asked for and kept
        already); None once every page is taken."""
        while self._pages:
            page = self._pages.pop()
            ids = [market_id for market_id in page.ids if market_id not in held]
            if ids or page.above != LAST_MARKET_ID:
                return Read(ids, page.above)
        return None

    def again(self, page: Read) -> None:
        """A page taken is to be read again (a change was announced while it was read): it
        is the next taken."""
        self._pages.append(page)

    async def take_asked(self) -> Read:
        """Every window asked for and not yet read, once there is one."""
        while not self._asked:
            await self._asking.wait()
            self._asking.clear()
        asked, self._asked = list(self._asked), {}
        return Read(asked)

    def kept(self, market_ids: Iterable[int]) -> None:
        """These markets' windows are kept: whoever waits for them goes on, and they are not
        read again for them."""
        if self._waited:
            for market_id in market_ids:
                if (kept := self._waited.pop(market_id, None)) is not None:
                    self._asked.pop(market_id, None)
                    kept.set()

    def end(self) -> None:
        """The load ended: nobody waits any more."""
        self._ended = True
        for kept in self._waited.values():
            kept.set()
        self._waited.clear()

    def ask(self, market_id: int) -> asyncio.Event | None:
        """Ask for this market's window (once): the event set once it is kept or the load
        ended; None if it has ended."""
        if self._ended:
            return None
        kept = self._waited.get(market_id)
        if kept is None:
            kept = self._waited[market_id] = asyncio.Event()
            self._asked[market_id] = None
            self._asking.set()
        return kept

    async def until_kept(self, market_id: int) -> None:
        """Ask for this market's window and return once it is kept (or the load ended)."""
        if (kept := self.ask(market_id)) is not None:
            await kept.wait()
