"""The bytes of a /prices answer, built from a pair's columns of times and prices.

A day of minute ticks is 1,440 objects and about 148 kB of JSON. Building them as Python
objects and encoding those costs ~2.5 ms; here the body is joined from pieces instead, each
made by C code: the prices encoded as one JSON array and split, and each instant's text kept
once for every pair that has a tick then. The bytes are exactly those msgspec (Litestar's
encoder) writes for `PriceHistory` (tests/integration/test_prices_hot.py compares them).
"""

from __future__ import (
    annotations,  # array[int] in annotations (subscriptable at run time from 3.12)
)

import hashlib
import math
import operator
import struct
import zlib
from array import array
from collections.abc import Iterable, Sequence
from email.utils import format_datetime
from itertools import chain

import msgspec
from zlib_ng import zlib_ng

from datatracker.instants import instant

US_PER_SECOND = 1_000_000
# zlib's window bits for the gzip format.
GZIP_WBITS = 31
RAW_DEFLATE_WBITS = -15
GZIP_LEVEL = 2
# The first byte of a stored deflate block that starts on a byte boundary: BFINAL, then
# BTYPE 00, then padding (RFC 1951, 3.2.3-3.2.4).
STORED, STORED_LAST = b"\x00", b"\x01"
# A gzip member's header (RFC 1952): deflate, no name, no time, no flags, OS unknown.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# Texts of instants kept at most: a day of 10-second cycles, twice over.
MAX_INSTANTS = 20_000
# Runs of instants whose texts are kept as lists (~2 kB each beside the texts): a day's parts
# for ~90 timelines.
MAX_RUNS = 1_200

# What part_moments gives for each part, and sample_stdv takes end to end.
PART_MOMENTS = 3

_encode = msgspec.json.encode


class _InstantTexts(dict[int, bytes]):
    """`,"updated_at":"…Z"},` of an instant (µs since the epoch), made once and shared."""

    def __missing__(self, micros: int) -> bytes:
        if len(self) >= MAX_INSTANTS:
            self.clear()
        text = b',"updated_at":' + _encode(instant(micros)) + b"},"
        self[micros] = text
        return text


_INSTANTS = _InstantTexts()


# The texts of runs of instants (a part's array of them, as bytes), in order.
_RUNS: dict[bytes, list[bytes]] = {}


def _run_texts(times: array[int]) -> list[bytes]:
    """The `_INSTANTS` texts of these instants. Pairs written by the same cycles share their
    instants, so a part's run is looked up once for all of them: ~0.3 µs, against ~6 µs for
    120 instants one by one."""
    run = times.tobytes()
    texts = _RUNS.get(run)
    if texts is None:
        if len(_RUNS) >= MAX_RUNS:
            _RUNS.clear()
        texts = _RUNS[run] = list(map(_INSTANTS.__getitem__, times))
    return texts


def part_moments(prices: array[float]) -> tuple[float, float, float]:
    """What `sample_stdv` needs of a part's prices (at least one): their mean c, rounded, and
    the sums, correctly rounded, of their deviations from c (A) and of those squared (B)."""
    centre = math.fsum(prices) / len(prices)
    deviations = [price - centre for price in prices]
    return centre, math.fsum(deviations), math.fsum(map(operator.mul, deviations, deviations))


def sample_stdv(counts: Sequence[int], moments: Sequence[float]) -> float | None:
    """The sample standard deviation of prices given in parts, as SQL's stddev_samp (None for
    fewer than two prices), from each part's count and `part_moments` (PART_MOMENTS numbers
    a part, end to end), so that a part's sums serve every answer that holds it whole. With
    the mean m of all the prices, each part adds B + (c - m)(2A + n(c - m)) to the sum of
    squared deviations: for prices whose spread is a billionth of their level it agrees with
    one sum over all of them to ~1e-14 (tests/unit/test_price_body.py)."""
    n = sum(counts)
    if n < 2:
        return None
    centres, deviations, squares = (moments[i::PART_MOMENTS] for i in range(PART_MOMENTS))
    mean = math.fsum(chain(map(operator.mul, counts, centres), deviations)) / n
    spread = math.fsum(
        part_squares + (centre - mean) * (2 * part_deviations + count * (centre - mean))
        for count, centre, part_deviations, part_squares in zip(
            counts, centres, deviations, squares, strict=True
        )
    )
    return math.sqrt(spread / (n - 1))


def _pair(exchange: str, symbol: str) -> bytes:
    """`{"exchange":…,"symbol":…`: how PriceHistory and each Price begin."""
    return b'{"exchange":' + _encode(exchange) + b',"symbol":' + _encode(symbol)


def history_head(exchange: str, symbol: str) -> bytes:
    """The JSON of PriceHistory(exchange, symbol, …) up to its first price."""
    return _pair(exchange, symbol) + b',"prices":['


def history_points(exchange: str, symbol: str, times: array[int], prices: array[float]) -> bytes:
    """The JSON of these Prices, joined by commas: a run of PriceHistory's `prices`."""
    if not prices:
        return b""
    texts = _encode(prices.tolist())[1:-1].split(b",")
    pieces = [_pair(exchange, symbol) + b',"price":'] * (3 * len(texts))
    pieces[1::3] = texts
    pieces[2::3] = _run_texts(times)
    return b"".join(pieces)[:-1]


def history_rest(stdv: float | None, rank: int | None, ranked: int) -> bytes:
    """The JSON of PriceHistory after its last price."""
    return b'],"stdv":%s,"rank":%s,"ranked":%d}' % (_encode(stdv), _encode(rank), ranked)


class GzipMember:
    """One gzip member (RFC 1952) put together from texts deflated apart, in order.

    Each text is deflated on its own and ended on a byte boundary (a full flush: RFC 1951
    blocks not marked last, and no match reaching back before it), so the next one's deflate
    continues the same stream, and a part deflated for an earlier body can be reused as it is.
    The CRC-32 of the whole is combined from the parts'. Texts of a few dozen bytes (the head,
    the stdv and rank after the prices) are stored as they are, in stored blocks (RFC 1951,
    3.2.4): deflating them would save a few bytes for ~10 µs each. zlib-ng at level 2: a day of
    minute prices quoted to six significant digits, ~133 kB of JSON, deflates to ~11 kB in
    two-hour parts in ~0.2 ms, by one compressor for every text (`_deflate`: a new one for
    each part cost ~8 µs more, its state allocated and cleared)."""

    __slots__ = ("_pieces", "crc", "length", "size")

    def __init__(
        self, start: bytes | memoryview = GZIP_HEADER, crc: int = 0, size: int = 0
    ) -> None:
        """A new member, or one whose bytes so far (its header included) are `start`, for a
        text so far of this CRC-32 and length."""
        self._pieces: list[bytes | memoryview] = [start]
        self.crc, self.size = crc, size
        self.length = len(start)  # the bytes so far

    def add(self, deflated: bytes | memoryview, crc: int, size: int) -> None:
        """A part deflated before: its bytes, and its text's CRC-32 and length."""
        self._pieces.append(deflated)
        self.crc = zlib_ng.crc32_combine(self.crc, crc, size)
        self.size += size
        self.length += len(deflated)

    def add_parts(
        self, deflated: bytes | memoryview, crcs: Iterable[int], sizes: Iterable[int]
    ) -> None:
        """Parts deflated before, in a row: their bytes, and each text's CRC-32 and length."""
        self._pieces.append(deflated)
        crc, combine = self.crc, zlib_ng.crc32_combine
        for part_crc, size in zip(crcs, sizes, strict=True):
            crc = combine(crc, part_crc, size)
            self.size += size
        self.crc = crc
        self.length += len(deflated)

    def add_text(self, text: bytes) -> tuple[int, int, int]:
        """Deflate and add `text`; its CRC-32, its length and its deflated length."""
        deflated = _deflate(text)
        crc = zlib_ng.crc32(text)
        self.add(deflated, crc, len(text))
        return crc, len(text), len(deflated)

    def add_stored(self, text: bytes, last: bool = False) -> None:
        """Add `text` (at most 65,535 bytes) in a stored block, the stream's last if `last`.
        Every piece ends on a byte boundary, so the block's 3 header bits and their padding
        make one byte, then its length and the length's complement."""
        size = len(text)
        header = STORED_LAST if last else STORED
        self.add(header + struct.pack("<HH", size, size ^ 0xFFFF) + text, zlib_ng.crc32(text), size)

    def finish(self, text: bytes) -> bytes:
        """The member, with `text` stored last (ending the stream)."""
        self.add_stored(text, last=True)
        trailer = struct.pack("<II", self.crc, self.size & 0xFFFFFFFF)
        return b"".join((*self._pieces, trailer))


def _deflate(text: bytes) -> bytes:
    """`text` deflated as a run of blocks that ends on a byte boundary and refers to nothing
    before it: after a full flush the compressor starts afresh (zlib's manual, deflate()), so
    the same text gives the same bytes whatever was deflated before it
    (tests/unit/test_price_body.py)."""
    global _compressor
    try:
        return _compressor.compress(text) + _compressor.flush(zlib.Z_FULL_FLUSH)
    except BaseException:  # a text half taken would lead the next one's bytes
        _compressor = _new_compressor()
        raise


def _new_compressor() -> zlib_ng._Compress:
    return zlib_ng.compressobj(GZIP_LEVEL, zlib.DEFLATED, RAW_DEFLATE_WBITS)


_compressor = _new_compressor()


def gunzip(gzipped: bytes) -> bytes:
    """The body of a gzip member, by zlib-ng (~0.06 ms for a day of minute prices)."""
    return zlib_ng.decompress(gzipped, GZIP_WBITS)


def http_date(micros: int) -> str:
    """An HTTP date (RFC 9110), to the second."""
    return format_datetime(instant(micros).replace(microsecond=0), usegmt=True)


def gzip_tag(etag: str) -> str:
    """The ETag of the gzip-coded answer: a representation of its own (RFC 9110, 8.8.3)."""
    return etag[:-1] + '-gzip"'


def part_digest(times: array[int], prices: array[float]) -> bytes:
    """A digest of a part's instants and prices, for `entity_tag`."""
    digest = hashlib.blake2b(times, digest_size=16)
    digest.update(prices)
    return digest.digest()


def entity_tag(exchange: str, symbol: str, digests: bytes, rank: int | None, ranked: int) -> str:
    """A strong ETag of the answer whose parts' `part_digest`s these are, end to end: the same
    in every worker and on every path, and different whenever the body is (its stdv follows
    from the prices)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{exchange}\0{symbol}\0{rank}\0{ranked}\0".encode())
    digest.update(digests)
    return f'"{digest.hexdigest()}"'
