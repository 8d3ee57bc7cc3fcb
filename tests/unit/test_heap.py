"""heap.trim hands pages freed between live objects back to the system (glibc)."""

from pathlib import Path

import pytest

from api import heap


def resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_memory_freed_between_kept_answers_goes_back_to_the_system() -> None:
    """As answers are replaced: 100 MB in ~11 kB blocks, every other one freed, then a
    trim returns (most of) the ~50 MB of holes the heap would otherwise keep."""
    if heap._MALLOC_TRIM is None:
        pytest.skip("no glibc malloc_trim in this process")
    blocks = [bytes(11_000) + bytes([i % 256]) for i in range(9_000)]
    del blocks[::2]
    before = resident_kib()
    heap.trim()
    after = resident_kib()
    assert before - after > 30_000, (before, after)
    assert len(blocks) == 4_500
