"""No password in what the services print: a malformed or unreachable DATABASE_URL is reported
without it, by `python -m api` and `python -m collector` alike."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from datatracker.database import redact_dsn
from tests.api_server import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "S3cretPW"
# The scheme's colon is missing: psycopg's parse error quotes the whole string.
MALFORMED = f"postgresql//collector:{PASSWORD}@127.0.0.1:5499/datatracker"
# Well formed, but nothing listens on port 9.
UNREACHABLE = f"postgresql://collector:{PASSWORD}@127.0.0.1:9/datatracker"
SERVICES = [["-m", "api"], ["-m", "collector"]]


def run(args: list[str], database_url: str, tmp_path: Path, seconds: float) -> tuple[int, str]:
    """Run a service with `database_url` for at most `seconds` (then SIGTERM); its exit code
    and everything it printed."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "PRICE_SOURCE": "simulated",
        "SPOOL_DIR": str(tmp_path / "spool"),
        "API_PORT": str(free_port()),
    }
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=tmp_path,  # no .env of the checkout
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    return process.returncode, output


@pytest.mark.parametrize("args", SERVICES, ids=["api", "collector"])
def test_a_malformed_url_stops_the_service_without_its_password(
    args: list[str], tmp_path: Path
) -> None:
    """One line names DATABASE_URL and psycopg's complaint, the password masked."""
    code, output = run(args, MALFORMED, tmp_path, seconds=30)

    assert PASSWORD not in output
    assert 0 != code
    assert "collector:***@" in output, output
    assert output.startswith("configuration error: DATABASE_URL: "), output


@pytest.mark.slow
@pytest.mark.parametrize("args", SERVICES, ids=["api", "collector"])
def test_an_unreachable_database_is_logged_without_the_password(
    args: list[str], tmp_path: Path
) -> None:
    """While the database does not answer, the logs say so and never show the password."""
    _, output = run(args, UNREACHABLE, tmp_path, seconds=4)

    assert PASSWORD not in output
    assert "127.0.0.1" in output, output  # it did say where it could not connect


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f'missing "=" after "{MALFORMED}"',
            'missing "=" after "postgresql//collector:***@127.0.0.1:5499/datatracker"',
        ),
        (UNREACHABLE, "postgresql://collector:***@127.0.0.1:9/datatracker"),
        (
            f"host=db user=api password={PASSWORD} dbname=x",
            "host=db user=api password=*** dbname=x",
        ),
        (f"password = '{PASSWORD} x' host=db", "password = *** host=db"),
        (
            "12:00:00Z INFO api: GET /prices/kraken/btcusd",
            "12:00:00Z INFO api: GET /prices/kraken/btcusd",
        ),
    ],
)
def test_redact_dsn_masks_every_password_form(text: str, expected: str) -> None:
    """URL userinfo, with or without a correct scheme, and key=value passwords, quoted or not."""
    assert expected == redact_dsn(text)
