"""Memory freed by Python handed back to the system.

glibc keeps what a process frees in its heap, and returns it only from the heap's top. An
API worker replaces thousands of kept answers a minute (api/windows.py), each ~11 kB, among
short-lived buffers, so freed memory ends up in holes it never returns: at 10k pairs its RSS
grew by 50-100 MiB over the windows it counts (bench/RESULTS.md). `trim()` asks glibc's
malloc_trim to return every whole free page (about 0.3 ms with the windows of 10k pairs); the
listener calls it after each change it applies. With another C library it does nothing.
"""

import ctypes
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None


_MALLOC_TRIM = _malloc_trim()


def trim() -> None:
    """Return the heap's free pages to the system, where glibc can."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
