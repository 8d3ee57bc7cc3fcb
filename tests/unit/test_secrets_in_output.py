"""No password in what the services print: a malformed or unreachable DATABASE_URL is reported
without it, by every command, whatever the string's shape."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from datatracker.database import redact_dsn
from datatracker.settings import SettingsError, load_settings
from tests.api_server import free_port
from tests.commands import COMMANDS

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
    assert [
        'configuration error: DATABASE_URL: Value error, missing "=" after "***" in '
        "connection info string"
    ] == output.splitlines()


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


# The password in shapes that break a URL or a key=value string, or make libpq read part of
# it as something else: a stray %, an unencoded @ / space or quote, a %00.
PASSWORDS = [
    f"{PASSWORD}%",
    f"%ZZ{PASSWORD}",
    f"{PASSWORD}%2",
    "S3c%retPW",
    "S3c@retPW",
    "S3c/retPW",
    "S3c retPW",
    'S3c"retPW%',
    f"{PASSWORD}%00",
    "S3c[retPW%",
]
# Well-formed URLs, malformed by any password above.
URLS = ["postgresql://api:{pw}@127.0.0.1:5496/tracker", "postgres://api:{pw}@db/tracker"]
# Strings malformed whatever the password: refused with it plain or in any shape above.
SHAPES = [
    "postgresql//api:{pw}@127.0.0.1:5496/tracker",
    "postgresql://api:{pw}@127.0.0.1:abc/tracker",
    "postgresql://api:{pw}@[::1/tracker",
    "postgresql://api:{pw}@db/tracker?sslmode=sometimes",
    "postgresql://api:{pw}@db/tracker?connect_timeout=soon",
    "postgresql://api:{pw}@db/tracker?no_such_option=1",
    "postgresql://api:{pw}@db/tracker?x",
    "postgresql://api:{pw}@db,db2/tracker?port=1,2,3",
    "host=127.0.0.1 password={pw} port=abc",
    "host=127.0.0.1 password={pw} port=70000",
    "host=127.0.0.1 password={pw} foo=bar",
    "host= password={pw}",
    "user= password={pw} host=db",
    "dbname= password={pw} host=db",
    "options= password={pw}",
    "password='{pw}",
    "password={pw} trailing",
    "{pw}",
    "host=db password={pw} sslmode=maybe",
    "host=db password={pw} hostaddr=not-an-address",
    "host=db password={pw} keepalives=often",
    "host=db password={pw} target_session_attrs=whatever",
    "host=db password={pw} require_auth=magic",
    "host=db,db2,db3 password={pw} port=1,2",
]


def pieces(password: str) -> list[str]:
    """Every part of the password four characters long or more, as found in output."""
    plain = password.replace("%", "").replace("@", "").replace("/", "").replace(" ", "")
    return [plain[i : i + 4] for i in range(len(plain) - 3)]


def shown(output: str) -> list[str]:
    """The parts of the password that `output` shows."""
    return [piece for piece in pieces(PASSWORD) if piece in output]


CASES = [(url, pw) for url in URLS for pw in PASSWORDS]
CASES += [(shape, pw) for shape in SHAPES for pw in [PASSWORD, *PASSWORDS]]


@pytest.mark.parametrize(("shape", "password"), CASES)
def test_a_malformed_database_url_is_refused_without_any_part_of_the_password(
    shape: str, password: str
) -> None:
    """Every malformed shape, the password plain or broken, is refused at load with one line
    naming DATABASE_URL and showing no four characters of the password."""
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, database_url=shape.format(pw=password))
    message = str(refused.value)

    assert [] == shown(message), message
    assert message.startswith("configuration error: DATABASE_URL: "), message
    assert 1 == len(message.splitlines())


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "shape",
    [
        "postgresql://api:S3cretPW%@127.0.0.1:5496/tracker",
        "postgresql://api:%ZZS3cretPW@127.0.0.1:5496/tracker",
        "postgresql://api:S3cretPW%2@127.0.0.1:5496/tracker",
        "S3cretPW",
        "postgresql://api:S3c@retPW@127.0.0.1:5496/tracker",
        "postgresql://api:S3c/retPW@127.0.0.1:5496/tracker",
        "host=127.0.0.1 password=S3cretPW port=abc",
        "host=127.0.0.1 password=S3cretPW foo=bar",
        "user= password=S3cretPW host=127.0.0.1",
        "password='S3cretPW",
    ],
)
def test_every_command_refuses_a_malformed_url_in_one_line_without_the_password(
    command: str, shape: str, tmp_path: Path
) -> None:
    """Each real command stops at start, non-zero, with one line naming DATABASE_URL, and
    prints no part of the password."""
    code, output = run(COMMANDS[command], shape, tmp_path, seconds=30)

    assert 0 != code
    assert [] == shown(output), output
    assert 1 == len(output.splitlines()), output
    assert output.startswith("configuration error: DATABASE_URL: "), output
