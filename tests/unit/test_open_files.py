"""`python -m api` raises its open-file limit to what API_MAX_CONNECTIONS needs: with Debian's
usual soft limit of 1,024, 1,100 idle sockets must not leave it unable to accept."""

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from api.server import SPARE_FILES, refusing_limit

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import resource; from api.server import allow_open_files;"
    " print(allow_open_files(4096), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
)


def limited_to(soft: int, hard: int) -> tuple[int, int]:
    """(connections allowed, soft limit after) of allow_open_files(4096), in a process started
    with these limits of open files."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        preexec_fn=limit,  # only setrlimit, before exec
        capture_output=True,
        text=True,
        check=True,
    )
    allowed, after = result.stdout.split()
    return int(allowed), int(after)


def test_a_low_soft_limit_is_raised_to_what_the_connections_need() -> None:
    """A soft limit of 1,024 under a higher hard limit is raised: all 4,096 connections fit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 8192:
        pytest.skip(f"the hard limit of open files here is {hard}")

    allowed, soft = limited_to(1024, 8192)

    assert 4096 == allowed
    assert soft > 4096


def test_a_low_hard_limit_lowers_the_connections_allowed() -> None:
    """Under a hard limit of 1,024 the API takes fewer connections than asked, keeping room
    for those it refuses past them and spare files for the database and logs, rather than
    failing at accept()."""
    allowed, soft = limited_to(1024, 1024)

    assert 1024 == soft
    assert (1024 - SPARE_FILES) * 4 // 5 == allowed
    assert allowed + refusing_limit(allowed) + SPARE_FILES <= soft
