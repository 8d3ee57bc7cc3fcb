"""The bulk load's pages, read on a connection of its own in a thread of its own.

A page is ~100 windows, ~2 MB of rows. Read on the event loop, they come off the socket only
as often as the loop gets to them; while it answers requests the socket's buffer fills and
the database waits for it to be drained. A thread takes them off at once (psycopg releases
the GIL while it waits), and reads the next page while the loop keeps the windows of the last
(api/windows.py: PriceWindows.load).
"""

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from api.load_pages import Read

Rows = list[tuple[Any, ...]]


class PageReader:
    """Reads of `query` with the parameters `params` gives for a page, one at a time."""

    def __init__(
        self, conninfo: str, query: str, params: Callable[[Read], dict[str, Any]], name: str
    ) -> None:
        self._conninfo, self._query, self._params, self._name = conninfo, query, params, name
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="datatracker-load")
        self._conn: psycopg.Connection[Any] | None = None

    async def open(self) -> None:
        await self._in_thread(self._connect)

    async def read(
        self, page: Read | None, version: int, caught_up: Callable[[], Awaitable[None]]
    ) -> tuple[Read, int, asyncio.Future[Rows]] | None:
        """Begin reading `page` once `caught_up` returns: the page, the `version` of the
        changes it is read at, and its rows to come; None for no page."""
        if page is None:
            return None
        await caught_up()
        return page, version, self._in_thread(self._fetch, page)

    def close(self) -> None:
        """Close the connection once a read under way is done, without waiting for it."""
        self._thread.submit(self._close)
        self._thread.shutdown(wait=False)

    def _in_thread(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def _connect(self) -> None:
        # Kept here, in the thread: a load cancelled while this runs still has `close` close it.
        self._conn = psycopg.Connection.connect(
            self._conninfo, autocommit=True, application_name=self._name
        )

    def _fetch(self, page: Read) -> Rows:
        assert self._conn is not None
        cursor = self._conn.execute(self._query, self._params(page), binary=True)
        return cursor.fetchall()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
