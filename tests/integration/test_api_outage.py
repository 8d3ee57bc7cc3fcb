"""`python -m api` through a database outage: 503 at once while it is away, serving again
as soon as it is back, one log line each way."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from datatracker.logs import quiet_outage_warnings
from tests.api_server import api_process
from tests.tcp_proxy import TcpProxy

# Long enough that psycopg_pool's own reconnection, left to itself, would next try a good
# while after the restore (its pauses double: 1, 2, 4, 8, 16 s).
OUTAGE_SECONDS = 20
# Far below the pool's 5 s wait for a connection, which every request took before its 503.
REFUSED_WITHIN_SECONDS = 1.0
# Far below the backoff's next attempt (about 11 s after a 20 s outage).
SERVING_WITHIN_SECONDS = 5.0


@contextlib.asynccontextmanager
async def api_through(proxy: TcpProxy, api_url: str, log: Path) -> AsyncIterator[int]:
    """`python -m api` (one worker, as the role `api`) reaching the database through `proxy`;
    its port. Started in a thread: the proxy runs on this event loop."""
    serving = api_process(proxy.route(api_url), log, API_WORKERS="1")
    port, _ = await asyncio.to_thread(serving.__enter__)
    try:
        yield port
    finally:
        await asyncio.to_thread(serving.__exit__, None, None, None)


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[int, float, float]:
    """The status of GET `path`, when it was sent (monotonic seconds) and the seconds it took."""
    started = time.monotonic()
    response = await client.get(path)
    return response.status_code, started, time.monotonic() - started


async def test_api_refuses_at_once_during_an_outage_and_serves_once_it_is_back(
    proxy: TcpProxy, api_url: str, tmp_path: Path
) -> None:
    """While the database is cut off every /rankings and /health gets its 503 at once, not
    after the pool's wait, from the moment the API sees the cut (a cached answer may still go
    out in the milliseconds before it does, never after); once it is back the API serves within
    seconds; the log says so once each way, without psycopg_pool's connection warnings."""
    log = tmp_path / "api.log"
    async with (
        api_through(proxy, api_url, log) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        assert 200 == (await client.get("/rankings")).status_code
        await proxy.cut()
        during = []
        cut_at = time.monotonic()
        while time.monotonic() - cut_at < OUTAGE_SECONDS:
            for path in ("/rankings", "/health"):
                during.append(await timed_get(client, path))
            await asyncio.sleep(0.05)
        await proxy.restore()
        back_at = time.monotonic()
        while (await client.get("/rankings")).status_code != 200:
            assert time.monotonic() - back_at < 30, "not serving 30 s after the database is back"
            await asyncio.sleep(0.05)
        serving_after = time.monotonic() - back_at
        after = await client.get("/health")

    text = log.read_text()
    first_refusal = next((i for i, (status, _, _) in enumerate(during) if status == 503), None)
    assert first_refusal is not None, text
    assert during[first_refusal][1] - cut_at < REFUSED_WITHIN_SECONDS, text
    assert {200} >= {status for status, _, _ in during[:first_refusal]}, text
    assert {503} == {status for status, _, _ in during[first_refusal:]}, text
    assert max(seconds for _, _, seconds in during) < REFUSED_WITHIN_SECONDS
    assert serving_after < SERVING_WITHIN_SECONDS
    assert 200 == after.status_code
    assert 1 == text.count("database unreachable"), text
    assert 1 == text.count("database reachable again"), text
    assert "error connecting" not in text
    assert "Is the server running" not in text
    assert "Traceback" not in text


async def test_a_query_cut_short_while_the_server_is_unreachable_adds_no_warning(
    proxy: TcpProxy, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A task cancelled mid-query (a timeout, a bulk load stopped by the listener's loss)
    while the server cannot be reached: psycopg tries to cancel the query on the server, fails
    and closes the connection, and its warnings saying so are not logged; the service's one
    line has said the database is unreachable."""
    quiet_outage_warnings()  # the logger's filters: a record they refuse reaches no handler
    caplog.set_level(logging.WARNING, logger="psycopg")
    async with await psycopg.AsyncConnection.connect(proxy.route(database_url)) as conn:
        query = asyncio.create_task(conn.execute("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.5)  # the query runs on the server
        proxy.refuse()  # psycopg's cancel request needs a new connection: refused
        query.cancel()
        await asyncio.sleep(0.5)  # psycopg waits for the query's end after its attempt
        await proxy.cut()  # the database goes: the connection breaks
        with contextlib.suppress(asyncio.CancelledError):
            await query
        assert conn.closed  # psycopg gave up cancelling on the server, as during an outage
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []
