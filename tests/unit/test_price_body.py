"""The kept answer's body: the JSON msgspec writes for PriceHistory, as one gzip member that
any decoder reads, deflated in parts of which the next answer rebuilds only what changed."""

import gzip
import math
import random
import shutil
import statistics
import subprocess
import zlib
from array import array
from datetime import UTC, datetime

import msgspec
import pytest
from zlib_ng import zlib_ng

from api import price_body
from api.models import Price, PriceHistory
from api.price_body import GZIP_LEVEL, RAW_DEFLATE_WBITS
from api.windows import PART_FIELDS, Answer, Place, Window

START_US = 1_764_547_200_000_000  # 2025-12-01 00:00 UTC, on a part's boundary
MINUTE_US = 60_000_000
DAY_US = 1_440 * MINUTE_US


def day_window(minutes: int = 1_440, offset: int = 0) -> Window:
    times = array("q", [START_US + (offset + i) * MINUTE_US for i in range(minutes)])
    prices = array("d", [round(97_000 + (i * 7919 % 613) / 10, 1) for i in range(minutes)])
    return Window(1, "kraken", "btcusd", times, prices)


def expected_body(window: Window, answer: Answer) -> bytes:
    """What Litestar's encoder (msgspec) writes for the same PriceHistory, once the answer's
    stdv is checked against one computed over its prices at once."""
    _, lo, hi, place = answer.key
    prices = [
        Price("kraken", "btcusd", price, datetime.fromtimestamp(time / 1e6, UTC))
        for time, price in zip(window.times[lo:hi], window.prices[lo:hi], strict=True)
    ]
    if hi - lo < 2:
        assert answer.stdv is None
    else:
        assert answer.stdv is not None
        assert math.isclose(answer.stdv, statistics.stdev(window.prices[lo:hi]), rel_tol=1e-12)
    return msgspec.json.encode(
        PriceHistory("kraken", "btcusd", prices, answer.stdv, place.rank, place.ranked)
    )


def decoded_by_gzip_tool(member: bytes) -> bytes:
    tool = shutil.which("gzip")
    if tool is None:
        pytest.skip("no gzip tool on this machine")
    return subprocess.run([tool, "-dc"], input=member, capture_output=True, check=True).stdout


def part_bytes(answer: Answer) -> dict[int, bytes]:
    """Each part's deflated bytes, by its first instant."""
    parts, at, found = answer.parts, answer.parts_at, {}
    for i in range(0, len(parts), PART_FIELDS):
        length = parts[i + PART_FIELDS - 1]
        found[parts[i]] = answer.gzipped[at : at + length]
        at += length
    return found


def test_every_decoder_reads_the_json_of_the_price_history() -> None:
    """zlib, Python's gzip and the gzip tool read the answer as msgspec's JSON, byte for byte,
    for a whole day and for a span starting and ending inside parts."""
    window = day_window()
    for lo, hi in ((0, 1_440), (37, 1_001), (1_439, 1_440)):
        place = Place(3, 10)
        answer = window.answer_for(lo, hi, place)
        body = zlib.decompress(answer.gzipped, 31)
        assert body == expected_body(window, answer)
        assert body == gzip.decompress(answer.gzipped) == decoded_by_gzip_tool(answer.gzipped)


def test_pairs_sharing_instants_or_differing_in_one_each_read_as_their_own() -> None:
    """The instants' texts are kept by run, for every pair written at the same instants; a
    window whose instants differ in one from a run kept before reads as its own."""
    moved = day_window()
    moved.times[700] += 1_000_000  # a second later, inside a part another window built
    for window in (day_window(), day_window(), moved):
        answer = window.answer_for(0, 1_440, Place(None, 0))
        assert zlib.decompress(answer.gzipped, 31) == expected_body(window, answer)


def test_a_text_deflates_to_the_same_bytes_whatever_was_deflated_before() -> None:
    """Every part is deflated by one compressor: what comes out for a text is what a new
    compressor gives it, and inflates alone, whatever texts went before (a text seen before
    included: no match may reach back to it)."""
    rng = random.Random(5)
    texts = [rng.randbytes(rng.randrange(1, 3_000)) * rng.randrange(1, 9) for _ in range(40)]
    texts += [b"".join(texts[:5]), texts[0], texts[1][:100], b"x"]
    for text in texts:
        new = zlib_ng.compressobj(GZIP_LEVEL, zlib.DEFLATED, RAW_DEFLATE_WBITS)
        deflated = price_body._deflate(text)
        assert deflated == new.compress(text) + new.flush(zlib.Z_FULL_FLUSH)
        assert zlib.decompressobj(RAW_DEFLATE_WBITS).decompress(deflated) == text


def test_a_new_place_reuses_every_part_and_the_stdv() -> None:
    """A new ranking deflates nothing of the prices again: every part's bytes are the same."""
    window = day_window()
    first = window.answer_for(0, 1_440, Place(3, 10))
    second = window.answer_for(0, 1_440, Place(None, 11))

    assert part_bytes(first) == part_bytes(second)
    assert 12 == len(part_bytes(second))
    assert first.etag != second.etag
    body = zlib.decompress(second.gzipped, 31)
    assert body == expected_body(window, second)


def test_a_cycle_deflates_again_only_the_first_and_the_last_part() -> None:
    """A cycle adds a price at the end and the oldest leaves: the parts between are reused as
    they are, and the body is that of the new window."""
    window = day_window(minutes=1_440, offset=30)
    before = window.answer_for(0, 1_440, Place(3, 10))
    new_instant = START_US + (30 + 1_440) * MINUTE_US
    window.replace(new_instant, new_instant, [new_instant], [1.5], new_instant - DAY_US, {})
    lo, hi = window.span(new_instant + 1_000_000)  # a second later: the oldest has left
    after = window.answer_for(lo, hi, Place(3, 10))

    old, new = part_bytes(before), part_bytes(after)
    kept = {first for first in new if old.get(first) == new[first]}
    assert sorted(new)[1:-1] == sorted(kept)
    assert zlib.decompress(after.gzipped, 31) == expected_body(window, after)
    assert msgspec.json.decode(zlib.decompress(after.gzipped, 31))["prices"][-1]["price"] == 1.5


def test_a_change_inside_the_window_deflates_again_every_part_from_it_on() -> None:
    """A write that changes older prices (a gap filled, a correction) rebuilds the parts from
    the earliest instant it changed."""
    window = day_window()
    before = window.answer_for(0, 1_440, Place(3, 10))
    changed = START_US + 500 * MINUTE_US  # in the fifth part (8 h 20 min)
    window.replace(changed, changed, [changed], [2.5], START_US, {})
    after = window.answer_for(0, 1_440, Place(3, 10))

    old, new = part_bytes(before), part_bytes(after)
    firsts = sorted(new)
    assert all(old[first] == new[first] for first in firsts[:4])
    assert all(old[first] != new[first] for first in firsts[4:5])
    assert zlib.decompress(after.gzipped, 31) == expected_body(window, after)


def test_an_answer_built_from_kept_parts_is_the_one_built_afresh() -> None:
    """After a cycle the stdv and the ETag come from the kept parts' sums and digests and the
    new parts' own: the same bytes and validators as a worker that builds it from nothing."""
    window = day_window(minutes=1_440, offset=30)
    window.answer_for(0, 1_440, Place(3, 10))
    new_instant = START_US + (30 + 1_440) * MINUTE_US
    window.replace(new_instant, new_instant, [new_instant], [1.5], new_instant - DAY_US, {})
    lo, hi = window.span(new_instant + 1_000_000)
    rebuilt = window.answer_for(lo, hi, Place(3, 10))

    fresh = Window(1, "kraken", "btcusd", window.times[lo:hi], window.prices[lo:hi])
    afresh = fresh.answer_for(0, hi - lo, Place(3, 10))
    assert rebuilt.gzipped == afresh.gzipped
    assert rebuilt.tags == afresh.tags
    assert rebuilt.stdv == afresh.stdv


@pytest.mark.parametrize(
    ("level", "spread"), [(97_000.0, 50.0), (0.000_123, 0.000_001), (61_234.5, 0.000_01)]
)
def test_the_stdv_merged_from_parts_is_that_of_all_the_prices(level: float, spread: float) -> None:
    """Prices near a level far above their spread (where sums of squares lose digits), for
    spans beginning and ending inside parts, and for one and two prices."""
    generator = random.Random(level)
    window = day_window()
    for i in range(len(window.prices)):
        window.prices[i] = level + generator.gauss(0, spread)
    for lo, hi in ((0, 1_440), (37, 1_001), (119, 121), (1_438, 1_440)):
        answer = window.answer_for(lo, hi, Place(None, 0))
        expected = statistics.stdev(window.prices[lo:hi])
        assert answer.stdv is not None
        assert math.isclose(answer.stdv, expected, rel_tol=1e-12)
    assert window.answer_for(5, 6, Place(None, 0)).stdv is None


@pytest.mark.parametrize("seed", range(6))
def test_every_answer_rebuilt_from_kept_parts_is_the_one_built_afresh(seed: int) -> None:
    """Random cycles, minutes passing, prices corrected, gaps filled, spans deleted and places
    changed, in any order: after each, the answer built from the last one's parts has the body,
    ETags and stdv of an answer built from nothing over the same prices."""
    generator = random.Random(seed)
    window = day_window(minutes=1_440, offset=30)
    now = START_US + (30 + 1_440) * MINUTE_US
    place = Place(3, 10)
    for _ in range(300):
        step = generator.choice(["cycle", "minute", "correct", "fill", "delete", "place"])
        times = window.times
        if step == "cycle":
            now += MINUTE_US
            window.replace(now, now, [now], [generator.random()], now - 2 * DAY_US, {})
        elif step == "minute":
            now += generator.choice([1, 30, 60, 150, 1_800]) * 1_000_000
        elif step == "correct" and times:
            instant = generator.choice(times)
            window.replace(instant, instant, [instant], [generator.random()], times[0], {})
        elif step == "fill" and times:
            start = generator.choice(times) + 20_000_000
            filled = [start + k * MINUTE_US for k in range(generator.randint(1, 200))]
            prices = [generator.random() for _ in filled]
            window.replace(start, filled[-1], filled, prices, times[0], {})
        elif step == "delete" and times:
            start = generator.choice(times)
            end = start + generator.randint(0, 300) * MINUTE_US
            window.replace(start, end, (), (), times[0], {})
        else:
            place = Place(generator.choice([None, 1, 2]), generator.randint(0, 5))
        lo, hi = window.span(now)
        if lo == hi:
            continue
        rebuilt = window.answer_for(lo, hi, place)
        fresh = Window(1, "kraken", "btcusd", window.times[lo:hi], window.prices[lo:hi])
        afresh = fresh.answer_for(0, hi - lo, place)
        assert (rebuilt.gzipped, rebuilt.tags, rebuilt.stdv) == (
            afresh.gzipped,
            afresh.tags,
            afresh.stdv,
        ), step
        assert zlib.decompress(rebuilt.gzipped, 31) == expected_body(window, rebuilt)
