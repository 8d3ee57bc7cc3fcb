"""The kept answer's gzip: one member, valid for any gzip decoder, whose prices part a new
place reuses."""

import gzip
import shutil
import subprocess
import zlib
from array import array

import msgspec
import pytest

from api.models import PriceHistory
from api.windows import Place, Window

START_US = 1_764_547_200_000_000
MINUTE_US = 60_000_000


def window() -> Window:
    times = array("q", [START_US + i * MINUTE_US for i in range(1440)])
    prices = array("d", [round(97_000 + (i * 7919 % 613) / 10, 1) for i in range(1440)])
    return Window(1, "kraken", "btcusd", times, prices)


def decoded_by_gzip_tool(member: bytes) -> bytes:
    tool = shutil.which("gzip")
    if tool is None:
        pytest.skip("no gzip tool on this machine")
    return subprocess.run([tool, "-dc"], input=member, capture_output=True, check=True).stdout


def test_a_new_place_changes_only_the_rest_and_every_decoder_reads_the_whole() -> None:
    """The answer for another place reuses the deflated prices byte for byte; each answer
    decodes, by zlib, Python's gzip and the gzip tool, to the JSON of its place."""
    pair = window()
    first = pair.answer_for(0, 1440, Place(3, 10))
    second = pair.answer_for(0, 1440, Place(None, 11))

    assert bytes(first.deflated_prices) == bytes(second.deflated_prices)
    assert first.etag != second.etag
    for answer, place in ((first, Place(3, 10)), (second, Place(None, 11))):
        body = zlib.decompress(answer.gzipped, 31)
        assert body == gzip.decompress(answer.gzipped) == decoded_by_gzip_tool(answer.gzipped)
        history = msgspec.json.decode(body, type=PriceHistory)
        assert (history.rank, history.ranked) == (place.rank, place.ranked)
        assert [point.price for point in history.prices] == pair.prices.tolist()
        assert history.stdv == answer.stdv


def test_new_prices_are_deflated_again() -> None:
    """A change of the window (its version) builds the prices' part anew."""
    pair = window()
    before = pair.answer_for(0, 1440, Place(3, 10))
    pair.prices[-1] = 1.5
    pair.version += 1
    after = pair.answer_for(0, 1440, Place(3, 10))

    assert bytes(before.deflated_prices) != bytes(after.deflated_prices)
    assert msgspec.json.decode(zlib.decompress(after.gzipped, 31))["prices"][-1]["price"] == 1.5
