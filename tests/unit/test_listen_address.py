"""`python -m api` with an address it cannot listen on: one line naming the setting, status 1."""

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.commands import COMMANDS, run_python

URL = "postgresql://user:secret@db.invalid:5432/tracker"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port of 127.0.0.1 another socket listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def start_api(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m api` with one worker and `settings`, run until it exits."""
    return run_python(
        COMMANDS["api"], tmp_path, {"DATABASE_URL": URL, "API_WORKERS": "1", **settings}
    )


@pytest.mark.parametrize(
    ("host", "complaint"),
    [
        ("no-such-host.invalid", "API_HOST=no-such-host.invalid cannot be resolved ("),
        ("192.0.2.1", "API_HOST=192.0.2.1 is not an address of this machine"),
        ("", "API_HOST is empty: give an address (0.0.0.0: every interface)"),
    ],
)
def test_an_api_host_it_cannot_listen_on_stops_it_in_one_line(
    tmp_path: Path, host: str, complaint: str
) -> None:
    """An API_HOST that does not resolve, is not this machine's, or is empty stops the API
    at start with status 1 and one line naming API_HOST, before any worker starts."""
    result = start_api(tmp_path, API_HOST=host)

    assert 1 == result.returncode, result.stderr
    assert 1 == len(result.stderr.splitlines()), result.stderr
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


def test_an_api_port_in_use_stops_it_in_one_line(tmp_path: Path, busy_port: int) -> None:
    """An API_PORT another process listens on stops the API at start with status 1 and one
    line naming API_PORT (with one worker uvicorn would start the app first)."""
    result = start_api(tmp_path, API_HOST="127.0.0.1", API_PORT=str(busy_port))

    assert 1 == result.returncode, result.stderr
    assert [f"API_PORT={busy_port}: 127.0.0.1:{busy_port} is in use by another process"] == [
        line.split(" api: ", 1)[-1] for line in result.stderr.splitlines()
    ]


def test_an_api_port_out_of_range_stops_it_in_one_line(tmp_path: Path) -> None:
    """API_PORT=70000 stops the API at start with status 1 and one line naming API_PORT."""
    result = start_api(tmp_path, API_PORT="70000")

    assert 1 == result.returncode, result.stderr
    assert [
        "configuration error: API_PORT: Input should be less than or equal to 65535"
    ] == result.stderr.splitlines()
