"""What a result was measured on: machine, load, commit, server versions."""

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def commit() -> str:
    """The checkout's short commit, with `+dirty` when the working tree has changes."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head or 'unknown'}{'+dirty' if dirty else ''}"


def server_version(url: str) -> str:
    """PostgreSQL's and TimescaleDB's versions and TimescaleDB's license."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),"
            " current_setting('timescaledb.license', true)"
        ).fetchone()
    return "PostgreSQL {} / TimescaleDB {} ({})".format(*row) if row else "unknown"


def describe(url: str) -> dict[str, object]:
    """Everything RESULTS.md states next to a figure."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "server": server_version(url),
        "load_average": load_average(),
    }
