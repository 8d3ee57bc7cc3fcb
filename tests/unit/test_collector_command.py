"""`python -m collector` as a command: what it imports and how it ends on a bad exchange."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python(code: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run Python with this checkout on its path, in a scratch directory (no .env)."""
    return subprocess.run(
        [sys.executable, *code],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_imports_ccxt_only_for_a_live_source(tmp_path: Path) -> None:
    """Loading the command leaves ccxt alone: a simulated backfill or run never pays for it."""
    done = python(["-c", "import sys, collector.__main__; print('ccxt' in sys.modules)"], tmp_path)

    assert ("False", 0) == (done.stdout.strip(), done.returncode), done.stderr


def test_an_exchange_ccxt_does_not_know_is_a_configuration_error(tmp_path: Path) -> None:
    """The collector exits 2 naming the setting, before it needs the database."""
    done = python(
        ["-m", "collector", "once"],
        tmp_path,
        DATABASE_URL="postgresql://collector:collector@127.0.0.1:9/datatracker",
        PRICE_SOURCE="live",
        SUPPORTED_EXCHANGES="nosuchexchange",
    )

    assert 2 == done.returncode, done.stderr
    assert "configuration error: SUPPORTED_EXCHANGES: ccxt knows no exchange" in done.stderr
