"""Every pair's last 24 hours of prices, kept in memory and moved forward by each write.

A pair's window is two columns, the instants (µs since the epoch) and the prices, 16 bytes a
tick: ~23 kB for a day of minute ticks, ~230 MB for 10,000 pairs. `PriceWindows` keeps as
many windows as API_WINDOWS_MB holds (counted in the bytes the columns and their objects
take); a pair beyond it is read from SQL at each request, as is every pair while the
listener is down.

The database stays the source of truth. Every write to ticks announces itself (migration
0005): a write that names its span (`ticks <first µs>/<last µs>`, as the collector's writer
and its backfill do) is read back for all pairs, streamed by market, and laid over each
window, whatever its length; a chunk dropped inside the 24 hours is cut out of every window
(one wholly older changes nothing, nor does compressing or decompressing one); a renamed or
deleted market changes that pair's window alone. Anything else (a write from psql, an
update, a delete, a span that is no sane one: api/announcements.py) drops every window, and
they are loaded again in bulk: `load` reads every pair's window in pages of markets by id,
a few queries in all, and the windows that requests wait for meanwhile before the others
(api/load_pages.py). Before a request is answered from memory, the listener proves that
every commit visible when it came has been read (api/freshness.py). Which name a pair has
(markets) and its place in the stored ranking are kept here too.
"""

from __future__ import (
    annotations,  # array[int] in annotations (subscriptable at run time from 3.12)
)

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from array import array
from asyncio import FIRST_COMPLETED
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection

from api.announcements import MARKETS, RANKING, TICKS, Announcement
from api.load_pages import LoadPages, Read
from api.page_reader import PageReader
from api.price_body import (
    PART_MOMENTS,
    GzipMember,
    entity_tag,
    gzip_tag,
    history_head,
    history_points,
    history_rest,
    http_date,
    part_digest,
    part_moments,
    sample_stdv,
)
from datatracker.instants import instant
from datatracker.queries import load_queries

QUERIES = load_queries(Path(__file__).with_name("windows.sql"))

DAY_US = 86_400 * 1_000_000
# The raw retention until storage_settings is read (RAW_RETENTION's default).
DEFAULT_RETENTION_US = 7 * DAY_US
# What a window costs beyond its columns: the Window, its arrays' headers, the dict slot.
WINDOW_OVERHEAD_BYTES = 400
# What a kept answer costs beyond its compressed body and its parts' tables: its key,
# validators and objects (measured with tracemalloc: ~640 bytes).
ANSWER_OVERHEAD_BYTES = 700
# The prices of each two hours of the epoch are deflated apart (see Answer); their fields in
# Answer.parts, and the length of a part's digest (Answer.digests).
PART_US = 2 * 3_600 * 1_000_000
PART_FIELDS = 5
DIGEST_BYTES = 16
# The bulk load reads this many markets' windows a query; an announced change to ticks while
# one is read makes it read again (it may predate the change).
LOAD_PAGE_MARKETS = 100
# The load lets requests be answered between each this many windows it keeps (~5 ms); a
# request for a window it has not kept waits at most this long for it (api/load_pages.py).
ADMIT_BATCH = 50
LOAD_WAIT_SECONDS = 1.0
# Connections reading the windows asked for: while one reads, the next asked wait for no one.
# At 10k pairs under wrk, two gave a fifth fewer requests over 15 ms in the 20 s after start
# than one (613-735 against 781-873 of ~100,000), three no fewer than two (700-761).
ASKED_READERS = 2
# What the load's connections are named in pg_stat_activity.
LOAD_APPLICATION = "datatracker-api-load"
# A written span is read back in batches of this many markets (a server-side cursor).
SPAN_BATCH_MARKETS = 1_000
# PostgreSQL's epoch (2000-01-01), in µs since the Unix epoch; and how many arrays of times
# converted from it a load keeps, to give pairs written at the same instants.
POSTGRES_EPOCH_US = 946_684_800_000_000
MAX_CONVERTED = 1_000

log = logging.getLogger(__name__)


async def nothing_to_wait_for() -> None:
    """A read on the primary waits for nothing (see PriceWindows.load)."""


@dataclass(frozen=True, slots=True)
class Place:
    """A pair's place in the stored ranking: `rank` (None if not ranked) of `ranked`, in the
    ranking over the 24 hours up to `as_of` (µs since the epoch; None before the first)."""

    rank: int | None
    ranked: int
    # Not part of what an answer says (its body and ETag): an answer built for the same place
    # in an earlier ranking stays the same answer.
    as_of: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Answer:
    """A window's answer for one span of it and one place: its body gzip-compressed (about a
    tenth of its size) and its validators as header values (the ETags of either coding, the
    time of its newest price).

    The body's prices are deflated in parts, one for each two hours of the epoch (PART_US), so
    that the next answer deflates again only the parts whose prices changed: after a cycle,
    the last part and the first (whose oldest price left); after a new ranking, none (its stdv
    is kept too). `parts` holds, for each, PART_FIELDS numbers: its first instant, its count
    of prices, its text's CRC-32 and length, and how many bytes it takes in `gzipped` (the
    first from `parts_at` on, the others after it, in order). What the stdv and the ETag need
    of a part is kept too, so that they are not computed again over the whole span: its
    prices' mean and sums of deviations (PART_MOMENTS numbers a part in `moments`: see
    sample_stdv) and its digest (`digests`, end to end). The stdv and rank after the prices
    are stored from `rest_at` on; `text_crc` and `text_size` are the CRC-32 and length of the
    body before them."""

    key: tuple[int, int, int, Place]  # the window's version, lo, hi, and the place
    etag: bytes
    gzip_etag: bytes
    last_modified: bytes
    gzipped: bytes
    stdv: float | None
    parts: array[int]
    moments: array[float]
    digests: bytes
    parts_at: int
    rest_at: int
    text_crc: int
    text_size: int

    @property
    def held_bytes(self) -> int:
        """What this answer takes: its body, its parts' tables, its objects."""
        tables = sum(map(sys.getsizeof, (self.parts, self.moments, self.digests)))
        return len(self.gzipped) + tables + ANSWER_OVERHEAD_BYTES

    @property
    def tags(self) -> tuple[str, str]:
        """The ETags of the plain and the gzip-coded answer."""
        return self.etag.decode(), self.gzip_etag.decode()

    def parts_bytes(self, i: int, j: int) -> memoryview:
        """The deflated bytes of parts [i, j), in a row."""
        lengths = self.parts[PART_FIELDS - 1 :: PART_FIELDS]
        start = self.parts_at + sum(lengths[:i])
        return memoryview(self.gzipped)[start : start + sum(lengths[i:j])]

    def run_from(self, first: int, leading: bool, before: int) -> tuple[int, int]:
        """The parts [i, j) that a new answer may take as they are from the part starting at
        `first` on (`leading`: as the new answer's first part, not led by a comma): those
        that end by `before` (µs: the earliest instant changed since), their first starting
        at `first`; (0, 0) when there is none."""
        firsts = self.parts[::PART_FIELDS]
        i = bisect_left(firsts, first)
        if i == len(firsts) or firsts[i] != first or (i == 0) != leading:
            return 0, 0
        return i, max(i, bisect_left(firsts, before - before % PART_US, i))


def part_end(instant: int) -> int:
    """The end (exclusive, µs) of the part whose two hours hold `instant`."""
    return instant - instant % PART_US + PART_US


class Window:
    """A pair's ticks from 24 hours before the last change on (and any stamped ahead of
    now), oldest first; `version` changes with every change to them. Windows whose pairs were
    written at the same instants share one `times` array: it is never changed in place."""

    __slots__ = (
        "answer",
        "changed_from",
        "exchange",
        "market_id",
        "prices",
        "symbol",
        "times",
        "version",
    )

    def __init__(
        self, market_id: int, exchange: str, symbol: str, times: array[int], prices: array[float]
    ) -> None:
        self.market_id, self.exchange, self.symbol = market_id, exchange, symbol
        self.times, self.prices = times, prices
        self.version = 0
        self.answer: Answer | None = None
        self.changed_from = sys.maxsize  # the earliest instant changed since `answer` was built

    @property
    def own_bytes(self) -> int:
        """What this window alone takes: its prices, its kept answer, its objects."""
        kept = self.answer.held_bytes if self.answer else 0
        return sys.getsizeof(self.prices) + kept + WINDOW_OVERHEAD_BYTES

    def span(self, now_us: int) -> tuple[int, int]:
        """The [lo, hi) positions of the ticks in the 24 hours up to `now_us`, as SQL's
        `time >= now() - interval '24 hours' AND time <= now()`."""
        return bisect_left(self.times, now_us - DAY_US), bisect_right(self.times, now_us)

    def answer_for(self, lo: int, hi: int, place: Place) -> Answer:
        """The answer for ticks [lo, hi) and `place`, built once for each of them, from the
        parts of the last one that no change since reached."""
        key = (self.version, lo, hi, place)
        kept = self.answer
        if kept is not None and kept.key == key:
            return kept
        if kept is not None and kept.key[:3] == key[:3]:  # the same prices
            self.answer = self._placed(kept, key)
            return self.answer
        times, prices, exchange, symbol = self.times, self.prices, self.exchange, self.symbol
        member = GzipMember()
        member.add_stored(history_head(exchange, symbol))
        parts_at = member.length
        parts, moments, digests = array("q"), array("d"), bytearray()
        a = lo
        while a < hi:
            i, j, b = self._kept_run(kept, a, lo, hi)
            if i < j and kept is not None:
                fields = kept.parts[i * PART_FIELDS : j * PART_FIELDS]
                crcs, sizes = fields[2::PART_FIELDS], fields[3::PART_FIELDS]
                member.add_parts(kept.parts_bytes(i, j), crcs, sizes)
                parts.extend(fields)
                moments.extend(kept.moments[i * PART_MOMENTS : j * PART_MOMENTS])
                digests += kept.digests[i * DIGEST_BYTES : j * DIGEST_BYTES]
            else:
                first = times[a]
                b = bisect_left(times, part_end(first), a, hi)
                part_times, part_prices = times[a:b], prices[a:b]
                text = history_points(exchange, symbol, part_times, part_prices)
                crc, size, length = member.add_text(b"," + text if a > lo else text)
                parts.extend((first, b - a, crc, size, length))
                moments.extend(part_moments(part_prices))
                digests += part_digest(part_times, part_prices)
            a = b
        stdv = sample_stdv(parts[1::PART_FIELDS], moments)
        text_crc, text_size, rest_at = member.crc, member.size, member.length
        gzipped = member.finish(history_rest(stdv, place.rank, place.ranked))
        digests_bytes = bytes(digests)
        etag = entity_tag(exchange, symbol, digests_bytes, place.rank, place.ranked)
        self.answer = Answer(
            key,
            etag.encode(),
            gzip_tag(etag).encode(),
            http_date(times[hi - 1]).encode(),
            gzipped,
            stdv,
            parts,
            moments,
            digests_bytes,
            parts_at,
            rest_at,
            text_crc,
            text_size,
        )
        self.changed_from = sys.maxsize
        return self.answer

    def _kept_run(self, kept: Answer | None, a: int, lo: int, hi: int) -> tuple[int, int, int]:
        """The kept answer's parts [i, j) that this answer may take as they are from tick `a`
        on (no change since reached them, and each holds the same ticks here), and the tick
        after them; (0, 0, a) when there is none. Only the last of them can hold fewer ticks
        than here (the kept span ended inside it) or more (this one does)."""
        if kept is None:
            return 0, 0, a
        i, j = kept.run_from(self.times[a], a == lo, self.changed_from)
        counts = kept.parts[1::PART_FIELDS]
        while i < j:
            b = a + sum(counts[i:j])
            last_end = part_end(kept.parts[(j - 1) * PART_FIELDS])
            if b == hi or (b < hi and self.times[b] >= last_end):
                return i, j, b
            j -= 1
        return 0, 0, a

    def _placed(self, kept: Answer, key: tuple[int, int, int, Place]) -> Answer:
        """The kept answer in a new place: the same prices and stdv, a new rest and ETag."""
        place = key[3]
        text = memoryview(kept.gzipped)[: kept.rest_at]
        member = GzipMember(text, kept.text_crc, kept.text_size)
        gzipped = member.finish(history_rest(kept.stdv, place.rank, place.ranked))
        etag = entity_tag(self.exchange, self.symbol, kept.digests, place.rank, place.ranked)
        return dataclasses.replace(
            kept, key=key, etag=etag.encode(), gzip_etag=gzip_tag(etag).encode(), gzipped=gzipped
        )

    def holds(self, start: int, end: int) -> bool:
        """Whether the window holds a tick in [start, end]."""
        return bisect_left(self.times, start) < bisect_right(self.times, end)

    def replace(
        self,
        start: int,
        end: int,
        times: Sequence[int],
        prices: Sequence[float],
        horizon: int,
        timelines: dict[tuple[object, ...], tuple[array[int], array[int]]],
    ) -> None:
        """Make the ticks in [start, end] these (as stored now), and forget those before
        `horizon` (at most `start`). Windows changed alike get one new `times` array, made
        once through `timelines` (kept for the whole round, so that no id is reused)."""
        cut = bisect_left(self.times, horizon)
        lo, hi = bisect_left(self.times, start), bisect_right(self.times, end)
        key = (id(self.times), cut, lo, hi, *times)
        if key not in timelines:
            changed = self.times[cut:lo]
            changed.extend(times)
            changed.extend(self.times[hi:])
            timelines[key] = (self.times, changed)
        self.times = timelines[key][1]
        self.prices[lo:hi] = array("d", prices)
        del self.prices[:cut]
        self.version += 1
        self.changed_from = min(self.changed_from, start)


class PriceWindows:
    """The windows of as many pairs as `max_bytes` holds, the markets' names and the stored
    ranking; served only while `serving` (the change listener is connected)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.serving = False
        # Changes with every announced change to what the windows hold, applied or not yet.
        self.version = 0
        self.loads = 0  # bulk loads begun (at start, after a reconnect, after a full drop)
        self._windows: dict[int, Window] = {}
        self._timelines: dict[bytes, array[int]] = {}  # the kept arrays of times, by content
        self._bytes = 0
        self._markets: dict[tuple[str, str], int] = {}
        self._places: dict[int, Place] = {}  # the ranked pairs'
        self._pages: LoadPages | None = None  # those of the load under way
        self._unranked = Place(None, 0)  # every other's
        # How far back a write may name instants (storage_settings), read at each start.
        self.retention_us = DEFAULT_RETENTION_US

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def held_bytes(self) -> int:
        """What the windows take, as counted against `max_bytes`."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._windows)

    def market_id(self, exchange: str, symbol: str) -> int | None:
        return self._markets.get((exchange, symbol))

    def window(self, market_id: int) -> Window | None:
        return self._windows.get(market_id)

    def place(self, market_id: int) -> Place:
        return self._places.get(market_id, self._unranked)

    def admit(self, window: Window, version: int) -> bool:
        """Keep a window read at `version` of the changes, if none came since and it fits;
        its `times` become those of a kept window written at the same instants, if any.
        False only when it did not fit."""
        if not self.serving or version != self.version or window.market_id in self._windows:
            return True
        self._markets[window.exchange, window.symbol] = window.market_id
        content = window.times.tobytes()
        shared = self._timelines.get(content)
        size = window.own_bytes + (0 if shared else sys.getsizeof(window.times))
        if self._bytes + size > self.max_bytes:
            return False
        if shared:
            window.times = shared
        else:
            self._timelines[content] = window.times
        self._windows[window.market_id] = window
        self._bytes += size
        return True

    def held(self) -> list[Window]:
        """The windows held, the oldest kept first."""
        return list(self._windows.values())

    def unanswered(self, window: Window) -> bool:
        """Whether the window is still held and has no answer yet."""
        return self._windows.get(window.market_id) is window and window.answer is None

    def adopt(self, window: Window, answer: Answer) -> bool:
        """Keep an answer built elsewhere for the window (api/prebuild.py) if the window is
        still held, has none yet, and has not changed since: every change to its columns
        moves its version on, the version `answer.key` names (a job sent after a change, its
        prices already changed in place, is refused so too)."""
        if not self.unanswered(window) or answer.key[0] != window.version:
            return False
        window.answer, window.changed_from = answer, sys.maxsize
        self._bytes += answer.held_bytes
        self._fit()
        return True

    def answer(self, window: Window, lo: int, hi: int, place: Place) -> Answer:
        """The window's answer for [lo, hi) and `place`, kept with it (and counted)."""
        kept = window.answer
        answer = window.answer_for(lo, hi, place)
        if answer is not kept and window.market_id in self._windows:
            self._bytes += answer.held_bytes - (kept.held_bytes if kept else 0)
            self._fit()
        return answer

    async def load(
        self, conninfo: str, caught_up: Callable[[], Awaitable[None]] = nothing_to_wait_for
    ) -> None:
        """Read every pair's window, a page of markets a query, keeping each that fits (not
        those held already), until all are read or no more fit. A connection of its own reads
        the pages, in a thread, less the windows held already, and ASKED_READERS others the
        windows requests wait for (`held_soon`), each taking all asked since the last read
        began; requests are answered between every few windows kept. A read made while a
        change to ticks was announced is read again. Each read is made once `caught_up`
        returns (on a standby: once it shows every change announced).

        The page after the one being kept is read meanwhile, and in a thread: the thread takes
        the rows off the socket as they come, where the event loop, busy answering requests,
        left the database waiting for it to drain them (at 10k pairs under wrk the load took
        7.8-8.0 s so, 4.8-5.1 s in the thread). Pages read on two connections at once made the
        load alone faster, 1.9 against 3.2 s, but the database then took both cores from the
        requests waiting for it: p99 19-21 ms against 15-16 ms in the first 20 s under wrk."""
        self.loads += 1
        started = time.monotonic()
        pages = self._pages = LoadPages(sorted(self._markets.values()), LOAD_PAGE_MARKETS)
        converted: dict[bytes, array[int]] = {}
        queries = 0

        async def keep(taken: Read, version: int, rows: list[tuple[Any, ...]]) -> bool | None:
            """Keep the windows of a read made at `version`: False once no more fit, None if
            a change announced since means it must be read again."""
            nonlocal queries
            queries += 1
            if version != self.version:
                return None
            fits = await self._admit_page(rows, version, converted, pages)
            if version == self.version or not fits:
                pages.kept(taken.ids)  # those with no window (gone, or not kept)
                return fits
            return None

        async def read_pages() -> None:
            reader = PageReader(conninfo, QUERIES["windows_of"], read_params, LOAD_APPLICATION)
            try:
                await reader.open()
                fetching = await reader.read(pages.take(self._windows), self.version, caught_up)
                while self.serving and fetching is not None:
                    taken, version, rows = fetching
                    fetching = await reader.read(pages.take(self._windows), self.version, caught_up)
                    kept = await keep(taken, version, await rows)
                    if kept is None:
                        pages.again(taken)
                    elif not kept:
                        return
            finally:
                reader.close()

        async def read_asked() -> None:
            async with await self._connect(conninfo) as conn:
                while self.serving:
                    taken, kept = await pages.take_asked(), None
                    while kept is None and self.serving:
                        version = self.version
                        await caught_up()
                        params = read_params(taken)
                        cursor = await conn.execute(QUERIES["windows_of"], params, binary=True)
                        kept = await keep(taken, version, await cursor.fetchall())
                    if kept is False:
                        return

        tasks = [asyncio.create_task(read_pages())]
        tasks += [asyncio.create_task(read_asked()) for _ in range(ASKED_READERS)]
        try:  # the asked windows are read until every page is
            done, _ = await asyncio.wait(tasks, return_when=FIRST_COMPLETED)
            for task in done:
                task.result()  # its error, if any
        finally:
            pages.end()
            if self._pages is pages:
                self._pages = None
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled():
                    task.exception()  # seen: a read that failed ended the load
        log.info(
            "price windows loaded: %d pairs, %.1f MiB, in %.1f s (%d queries)",
            len(self._windows),
            self._bytes / 2**20,
            time.monotonic() - started,
            queries,
        )

    @staticmethod
    async def _connect(conninfo: str) -> AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, application_name=LOAD_APPLICATION
        )

    async def _admit_page(
        self,
        rows: list[tuple[Any, ...]],
        version: int,
        converted: dict[bytes, array[int]],
        pages: LoadPages,
    ) -> bool:
        """Keep the windows of a read of the load, letting requests be answered between every
        ADMIT_BATCH of them (those waiting for one kept go on); False when one did not fit. A
        change announced meanwhile stops the rest being kept (`admit`): they are read again."""
        for first in range(0, len(rows), ADMIT_BATCH):
            batch = rows[first : first + ADMIT_BATCH]
            for market, exchange, symbol, times, prices in batch:
                window = Window(market, exchange, symbol, *columns(times, prices, converted))
                if not self.admit(window, version):
                    return False
            pages.kept(row[0] for row in batch if row[0] in self._windows)
            await asyncio.sleep(0)
        return True

    def ask(self, exchange: str, symbol: str) -> None:
        """Have a load under way read this pair's window at once if it is not held, without
        waiting for it: a request asks as it comes, so the read goes on during its sync round
        (`held_soon` then waits for the same read)."""
        pages = self._pages
        if pages is not None:
            market_id = self.market_id(exchange, symbol)
            if market_id is not None and market_id not in self._windows:
                pages.ask(market_id)

    async def held_soon(self, market_id: int) -> Window | None:
        """The market's window, once a load under way has kept it (asked for, it is read at
        once), waiting at most LOAD_WAIT_SECONDS; None when it is not held then."""
        pages = self._pages
        if pages is not None and market_id not in self._windows:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LOAD_WAIT_SECONDS):
                    await pages.until_kept(market_id)
        return self._windows.get(market_id)

    # The listener's side (api/cache.py): announce on receipt, then apply.

    def announce(self, source: str) -> None:
        """A change was announced: a window read before it is not kept (see `admit`)."""
        if source != RANKING:
            self.version += 1

    async def apply(self, conn: AsyncConnection, change: Announcement, now_us: int) -> bool:
        """Read what an announced change did (see the module's docstring); True when every
        window was dropped, to be loaded again."""
        if change.source == RANKING:
            await self._read_ranking(conn)
            return False
        if change.source == TICKS and change.span:
            await self._read_span(conn, *change.span, now_us)
            return False
        if change.source == MARKETS:
            await self._read_markets(conn)
            self._follow_markets()
            return False
        self._drop_windows()
        if change.source != TICKS:  # a malformed announcement: everything
            await self._read_markets(conn)
            await self._read_ranking(conn)
        return True

    async def chunks_changed(
        self, conn: AsyncConnection, before: str, after: str, now_us: int
    ) -> bool:
        """Follow the chunks of ticks from one ticks_storage() text to the next. A chunk
        compressed or decompressed changes no value: nothing to do. Otherwise the chunks'
        spans are read, and the ticks a window holds in the 24 hours where no chunk is now
        (dropped, even if added since the last check) are cut out of it. True when every
        window was dropped (the catalog could not be read)."""
        if chunk_ids(before) == chunk_ids(after):
            return False
        self.version += 1  # a window read from SQL meanwhile may hold ticks now dropped
        try:
            cursor = await conn.execute(QUERIES["chunk_ranges"])
            spans = sorted(await cursor.fetchall())
        except psycopg.ProgrammingError as error:
            log.warning("chunks of ticks unknown, every window loaded again: %s", error)
            self._drop_windows()
            return True
        horizon = now_us - DAY_US
        timelines: dict[tuple[object, ...], tuple[array[int], array[int]]] = {}
        edge = horizon
        for start, end in [*spans, (sys.maxsize, sys.maxsize)]:
            if start > edge:  # no chunk holds [edge, start)
                for window in self._windows.values():
                    if window.holds(edge, start - 1):
                        window.replace(edge, start - 1, (), (), horizon, timelines)
            edge = max(edge, end)
        if timelines:
            self._recount()
        return False

    async def start(self, conn: AsyncConnection) -> None:
        """Begin serving on a new listener connection: read the markets, the ranking, the
        raw retention. The windows are then loaded (`load`)."""
        self._drop_windows()
        await self._read_markets(conn)
        await self._read_ranking(conn)
        cursor = await conn.execute(QUERIES["raw_retention"])
        row = await cursor.fetchone()
        self.retention_us = int(row[0]) if row else self.retention_us
        self.version += 1
        self.serving = True

    def stop(self) -> None:
        """Stop serving (the listener is gone) and forget everything."""
        self.serving = False
        self.version += 1
        self._drop_windows()
        self._markets.clear()

    def _drop_windows(self) -> None:
        self._windows.clear()
        self._timelines.clear()
        self._bytes = 0

    async def _read_span(self, conn: AsyncConnection, start: int, end: int, now_us: int) -> None:
        """Lay the ticks stored in [start, end] over every window, streamed by market."""
        horizon = now_us - DAY_US
        if end < horizon or not self._windows:
            return
        start = max(start, horizon)
        params = {"start": instant(start), "end": instant(end)}
        timelines: dict[tuple[object, ...], tuple[array[int], array[int]]] = {}
        untouched = set(self._windows)
        converted: dict[bytes, array[int]] = {}
        async with (
            conn.transaction(),
            conn.cursor("ticks_between", binary=True) as cursor,
        ):
            await cursor.execute(QUERIES["ticks_between"], params)
            while rows := await cursor.fetchmany(SPAN_BATCH_MARKETS):
                for market_id, times, prices in rows:
                    window = self._windows.get(market_id)
                    if window is not None:
                        window.replace(
                            start, end, *columns(times, prices, converted), horizon, timelines
                        )
                        untouched.discard(market_id)
        for market_id in untouched:  # no tick stored in the span
            if (window := self._windows.get(market_id)) is not None:
                window.replace(start, end, (), (), horizon, timelines)
        self._recount()
        self._fit()

    def _follow_markets(self) -> None:
        """After the markets were read again: drop the window of a market deleted, rename
        that of a market renamed (its answer built again); leave every other."""
        names = {market_id: name for name, market_id in self._markets.items()}
        for market_id, window in list(self._windows.items()):
            name = names.get(market_id)
            if name is None:
                del self._windows[market_id]
            elif name != (window.exchange, window.symbol):
                window.exchange, window.symbol = name
                window.version += 1
                window.answer = None
        self._recount()

    def _recount(self) -> None:
        """Count what the windows take, each shared `times` array once, and keep those
        arrays for `admit` to share."""
        self._timelines = {}
        shared: dict[int, array[int]] = {}
        total = 0
        for window in self._windows.values():
            total += window.own_bytes
            shared[id(window.times)] = window.times
        for times in shared.values():
            total += sys.getsizeof(times)
            self._timelines[times.tobytes()] = times
        self._bytes = total

    def _fit(self) -> None:
        """Drop windows (the oldest kept first) until what is kept fits again; an array of
        times they shared is counted until the next recount."""
        while self._bytes > self.max_bytes and self._windows:
            window = self._windows.pop(next(iter(self._windows)))
            self._bytes -= window.own_bytes

    async def _read_markets(self, conn: AsyncConnection) -> None:
        cursor = await conn.execute(QUERIES["markets"], binary=True)
        rows = await cursor.fetchall()
        self._markets = {(exchange, symbol): market_id for market_id, exchange, symbol in rows}

    async def _read_ranking(self, conn: AsyncConnection) -> None:
        cursor = await conn.execute(QUERIES["ranks"], binary=True)
        ranks = await cursor.fetchall()
        cursor = await conn.execute(QUERIES["ranked"])
        ranked, as_of = await cursor.fetchone() or (0, None)
        self._places = {market_id: Place(rank, ranked, as_of) for market_id, rank in ranks}
        self._unranked = Place(None, ranked, as_of)


def chunk_ids(storage: str) -> set[int]:
    """The ids of the chunks a ticks_storage() text names (`id:status:compressed id,…`)."""
    return {int(part.split(":", 1)[0]) for part in storage.split(",") if part}


def read_params(taken: Read) -> dict[str, Any]:
    """The parameters of windows_of for a read of the load, as of now."""
    since = instant(time.time_ns() // 1000 - DAY_US)
    return {"ids": taken.ids, "above": taken.above, "since": since}


def columns(
    times: bytes, prices: bytes, converted: dict[bytes, array[int]]
) -> tuple[array[int], array[float]]:
    """A window's columns from their binary forms end to end (timestamptz_send, float8send):
    instants in µs since the Unix epoch, oldest first. Pairs written at the same instants
    send the same bytes of times: each is converted once, through `converted`."""
    values = array("d", prices)
    if sys.byteorder == "little":
        values.byteswap()
    instants = converted.get(times)
    if instants is None:
        raw = array("q", times)
        if sys.byteorder == "little":
            raw.byteswap()
        instants = array("q", [at + POSTGRES_EPOCH_US for at in raw])
        if any(a > b for a, b in pairwise(instants)):  # never seen: the rows come in order
            order = sorted(range(len(instants)), key=instants.__getitem__)
            return array("q", [instants[i] for i in order]), array("d", [values[i] for i in order])
        if len(converted) >= MAX_CONVERTED:
            converted.clear()
        converted[times] = instants
    return instants, values
