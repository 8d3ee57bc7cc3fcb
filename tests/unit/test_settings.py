"""Settings: read once from the environment, with one clear line for a bad value."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from datatracker.settings import SettingsError, load_settings

URL = "postgresql://user:secret@db.invalid:5432/tracker"


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment holding none of datatracker's variables."""
    for name in list(os.environ):
        if name in {"DATABASE_URL", "SUPPORTED_EXCHANGES", "PRICE_SOURCE", "API_PORT"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", URL)
    return monkeypatch


def test_defaults(environment: pytest.MonkeyPatch) -> None:
    """Only DATABASE_URL is needed; every other setting has a sane default."""
    settings = load_settings(_env_file=None)
    assert URL == settings.database_url
    assert ("binance", "coinbase", "kraken", "bitstamp", "okx") == settings.supported_exchanges
    assert 60 == settings.collect_interval_seconds
    assert "live" == settings.price_source
    assert 3 == settings.health_job_failures


def test_exchanges_are_comma_separated_and_normalised(environment: pytest.MonkeyPatch) -> None:
    """SUPPORTED_EXCHANGES takes the original's comma list, spaces and case ignored."""
    environment.setenv("SUPPORTED_EXCHANGES", " Kraken, binance-us ,,kraken")
    assert ("kraken", "binanceus") == load_settings(_env_file=None).supported_exchanges


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRICE_SOURCE", "carrier-pigeon"),
        ("COLLECT_INTERVAL_SECONDS", "0"),
        ("COLLECT_INTERVAL_SECONDS", "often"),
        ("API_PORT", "70000"),
        ("SUPPORTED_EXCHANGES", " , "),
    ],
)
def test_a_bad_value_is_named_in_the_error(
    environment: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """The error names the variable that is wrong."""
    environment.setenv(name, value)
    with pytest.raises(SettingsError, match=f"configuration error: {name}: "):
        load_settings(_env_file=None)


def test_missing_database_url_is_named(environment: pytest.MonkeyPatch) -> None:
    """Without DATABASE_URL the error says so."""
    environment.delenv("DATABASE_URL")
    with pytest.raises(SettingsError, match="DATABASE_URL: Field required"):
        load_settings(_env_file=None)


@pytest.mark.parametrize("program", ["collector", "api"])
def test_programs_stop_with_one_line_and_no_traceback(program: str, tmp_path: Path) -> None:
    """A bad setting stops either program at start with exactly one line on stderr."""
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": URL, "PRICE_SOURCE": "nope"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    result = subprocess.run(
        [sys.executable, "-m", program],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 1 == result.returncode
    assert [
        "configuration error: PRICE_SOURCE: Input should be 'live' or 'simulated'"
    ] == result.stderr.splitlines()
