"""Fixtures of the lifecycle and ranking tests: simulated history, and the licensed edition.

The Apache-2 path runs on the session's server (tests/conftest.py), one fresh database per
test. The Timescale License path runs on PGlite's WASM build of TimescaleDB
(scripts/pglite-server.sh): one server and one database for the session, which takes one
connection at a time and only small statements, so the history is small and written once.
"""

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from datatracker.schema import apply_schema
from datatracker.settings import load_settings
from tests.api_server import serve_api, until_cache_listens
from tests.integration.history import (
    refresh_candles,
    refresh_rankings,
    settings_for,
    simulated_history,
    write_history,
)
from tests.tcp_proxy import TcpProxy

PGLITE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pglite-server.sh"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_listening(server: subprocess.Popen[str], port: int, seconds: float) -> None:
    """Return once the server accepts TCP connections; fail if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"pglite server exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"pglite server not listening on {port} after {seconds:g} s")


@pytest.fixture(scope="session")
def licensed_database_url() -> Iterator[str]:
    """A TimescaleDB with the Timescale License features (PGlite WASM) holding the schema."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must test the Timescale License path: install node and npm")
        pytest.skip("node and npm are needed for the Timescale License path (PGlite)")
    port = free_port()
    server = subprocess.Popen(
        [str(PGLITE_SCRIPT), "start", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_listening(server, port, seconds=180)  # the first run installs the packages
        url = f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
        apply_schema(url)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)
        if server.stderr:
            server.stderr.close()


@pytest.fixture(scope="session")
async def licensed_history(licensed_database_url: str) -> str:
    """The licensed database's URL once the simulated history is written, materialised and
    ranked."""
    async with await psycopg.AsyncConnection.connect(
        licensed_database_url, autocommit=True
    ) as conn:
        await write_history(conn, await simulated_history())
    await refresh_candles(settings_for(licensed_database_url), "timescale")
    await refresh_rankings(settings_for(licensed_database_url))
    return licensed_database_url


@pytest.fixture
async def apache_history(database_url: str) -> str:
    """A fresh Apache-edition database's URL once the simulated history is written, rolled up
    and ranked."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await write_history(conn, await simulated_history())
    await refresh_candles(settings_for(database_url), "apache")
    await refresh_rankings(settings_for(database_url))
    return database_url


@pytest.fixture
async def apache_api(apache_history: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API over HTTP, reading the Apache-edition database with the simulated history."""
    async with serve_api(settings_for(apache_history)) as client:
        yield client


@pytest.fixture
async def licensed_api(licensed_history: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API over HTTP, reading the licensed database (its one connection) with the history."""
    async with serve_api(settings_for(licensed_history)) as client:
        yield client


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    """A cuttable TCP path to the test's database: `proxy.route(database_url)` goes through it."""
    params = conninfo_to_dict(database_url)
    async with TcpProxy(str(params.get("host", "127.0.0.1")), int(params.get("port", 5432))) as p:
        yield p


@pytest.fixture
def now() -> datetime:
    """This test's present, to the second: the 24-hour window is relative to it."""
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API with its default settings, served over HTTP on 127.0.0.1 and reading the test's
    database, once its response cache listens for changes."""
    async with serve_api(load_settings(_env_file=None, database_url=database_url)) as client:
        await until_cache_listens(client)
        yield client
