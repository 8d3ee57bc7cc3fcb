"""Every command that reads the settings, as `python` arguments (what the settings tests run),
and how a test runs one to its end."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "api": ["-m", "api"],
    "collector": ["-m", "collector"],
    "collector once": ["-m", "collector", "once"],
    "collector backfill": ["-m", "collector", "backfill", "--hours", "1"],
    "migrate": ["-m", "datatracker", "migrate"],
}


def run_python(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python *args` in `cwd` with `env` (and PATH, and this checkout on PYTHONPATH) to
    its end, its output captured."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
