"""Settings: read once from the environment, with one clear line for a bad value."""

import os
from pathlib import Path

import pytest

from datatracker.settings import SettingsError, load_settings
from tests.commands import COMMANDS, run_python

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


BAD_SETTINGS = {
    "PRICE_SOURCE": ("nope", "Input should be 'live' or 'simulated'"),
    "DATABASE_URL": (
        "host=127.0.0.1 user=api port=abc dbname=tracker",
        "Value error, port must be a number from 1 to 65535 (in a URL, write / in the password"
        " as %2F)",
    ),
    "EXCHANGE_BASE_URL": ("127.0.0.1:9", "Value error, must be an http:// or https:// URL"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", BAD_SETTINGS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_stops_with_one_line_and_no_traceback(
    command: str, name: str, tmp_path: Path
) -> None:
    """A bad setting stops every command at start with exactly one line on stderr."""
    value, complaint = BAD_SETTINGS[name]
    result = run_python(COMMANDS[command], tmp_path, {"DATABASE_URL": URL, name: value})
    assert 1 == result.returncode
    assert "" == result.stdout
    assert [f"configuration error: {name}: {complaint}"] == result.stderr.splitlines()


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("host=db port=abc", "port must be a number from 1 to 65535"),
        ("host=db port=0", "port must be a number from 1 to 65535"),
        ("host=db port=5432,5433", "port names 2 ports for 1 hosts"),
        ("host=db no_such_option=1", 'invalid connection option "***"'),
        ("host=db sslmode=sometimes", "sslmode must be one of disable, allow, prefer"),
        ("host=db connect_timeout=soon", "connect_timeout must be a whole number"),
        ("host=db hostaddr=db", "hostaddr must be an IP address"),
        ("host=db user= dbname=x", "user has no value and took the next option as one"),
        ("host=db,db2 hostaddr=127.0.0.1", "host names 2 hosts and hostaddr 1 addresses"),
        ("host=db require_auth=md5,!gss", "require_auth must be a list of"),
        ("postgresql://db:5432:1/x", "port must be a number from 1 to 65535"),
        ("postgresql://a b/x", 'unexpected spaces found in "***"'),
    ],
)
def test_a_database_url_libpq_would_refuse_on_connecting_is_refused_at_start(
    environment: pytest.MonkeyPatch, value: str, complaint: str
) -> None:
    """What libpq checks only when it connects (ports, enumerations, numbers, hosts) is
    checked when the settings load."""
    environment.setenv("DATABASE_URL", value)
    with pytest.raises(SettingsError, match="DATABASE_URL: Value error, ") as refused:
        load_settings(_env_file=None)
    assert complaint in str(refused.value)


@pytest.mark.parametrize(
    "value",
    [
        "postgresql://api@db:5432/tracker",
        "postgresql://api:p%40ss@db,db2:5432,5433/tracker?sslmode=verify-full&connect_timeout=5",
        "postgresql:///tracker?host=/var/run/postgresql",
        "postgresql://[::1]:5432/tracker?target_session_attrs=read-write",
        "host=db port=5432 user=api password='p w' dbname=tracker keepalives=1",
        "host=/tmp,db hostaddr=,127.0.0.1 port=5432 require_auth=scram-sha-256,password",
        "dbname=tracker options='-c statement_timeout=5s'",
    ],
)
def test_a_well_formed_database_url_is_accepted(
    environment: pytest.MonkeyPatch, value: str
) -> None:
    """Real connection strings, URLs and key=value, multi-host, socket directories, pass."""
    environment.setenv("DATABASE_URL", value)
    assert value == load_settings(_env_file=None).database_url


def test_the_api_listens_where_it_reads_unless_told(environment: pytest.MonkeyPatch) -> None:
    """API_LISTEN_URL is unset (empty counts as unset) by default: the API listens on
    DATABASE_URL; a standby's reads wait 2 s at most."""
    assert None is load_settings(_env_file=None).api_listen_url
    environment.setenv("API_LISTEN_URL", "")
    settings = load_settings(_env_file=None)
    assert (None, 2) == (settings.api_listen_url, settings.api_replica_wait_seconds)


def test_a_malformed_listen_url_is_refused_without_quoting_it(
    environment: pytest.MonkeyPatch,
) -> None:
    """API_LISTEN_URL is checked as DATABASE_URL is: named, its text (a password) not shown."""
    environment.setenv("API_LISTEN_URL", "postgresql://user:S3cret@host:port/db")
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None)
    assert "API_LISTEN_URL" in str(refused.value)
    assert "S3cret" not in str(refused.value)
