"""The API's sockets: idle and half-sent connections are closed, a connection limit answers 503
past it, request bodies and oversized headers are refused, and a client hanging up is no error.
"""

import asyncio
import contextlib
import os
import resource
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from datatracker.settings import load_settings
from tests.api_server import api_process, serve_api
from tests.integration.conftest import ONE_PRICE as PRICES

IDLE_SOCKETS = 2000
HEADER_TIMEOUT = 1.5


@contextlib.contextmanager
def room_for(needed: int) -> Iterator[None]:
    """This process's soft limit of open files raised to `needed` when it is lower, and put
    back afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"the hard limit of open files ({hard}) is below the {needed} needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def open_files() -> Iterator[None]:
    """Room for 2,000 idle sockets at both ends (this process runs client and server)."""
    with room_for(2 * IDLE_SOCKETS + 512):
        yield


@contextlib.asynccontextmanager
async def api_with(api_url: str, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """The API as the role `api`, with these settings, served as `python -m api` serves it."""
    async with serve_api(load_settings(_env_file=None, database_url=api_url, **settings)) as api:
        yield api


async def connect(api: httpx.AsyncClient, count: int, send: bytes = b"") -> list[socket.socket]:
    """`count` connections to the API, each having sent `send` and nothing more."""
    loop = asyncio.get_running_loop()
    sockets = []
    for _ in range(count):
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, ("127.0.0.1", api.base_url.port))
        if send:
            await loop.sock_sendall(client, send)
        sockets.append(client)
    return sockets


async def closed_by_server(client: socket.socket, within: float) -> bool:
    """Whether the server closes `client` within `within` seconds (reads its answer, if any)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while loop.time() < deadline:
            data = await asyncio.wait_for(loop.sock_recv(client, 65536), deadline - loop.time())
            if not data:
                return True
    except (TimeoutError, ConnectionResetError):
        return False
    return False


async def exchange(api: httpx.AsyncClient, request: bytes) -> bytes:
    """Send raw bytes on a new connection; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", api.base_url.port)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionResetError):
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.slow
async def test_idle_sockets_do_not_stop_answers_and_are_closed(
    api_url: str, one_price: None, open_files: None
) -> None:
    """2,000 connections that send nothing leave /prices answering 200, and are all closed
    once API_HEADER_TIMEOUT_SECONDS passes."""
    async with api_with(api_url, api_header_timeout_seconds=HEADER_TIMEOUT) as api:
        idle = await connect(api, IDLE_SOCKETS)
        try:
            answers = [(await api.get(PRICES)).status_code for _ in range(5)]
            closed = await asyncio.gather(*(closed_by_server(s, HEADER_TIMEOUT + 3) for s in idle))
        finally:
            for client in idle:
                client.close()

    assert [200] * 5 == answers
    assert IDLE_SOCKETS == sum(closed)


async def test_a_half_sent_request_is_closed_after_the_header_timeout(api_url: str) -> None:
    """A request whose headers never end holds its connection only API_HEADER_TIMEOUT_SECONDS."""
    async with api_with(api_url, api_header_timeout_seconds=HEADER_TIMEOUT) as api:
        started = time.monotonic()
        half = await connect(api, 100, b"GET /rankings HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        closed = await asyncio.gather(*(closed_by_server(s, HEADER_TIMEOUT + 3) for s in half))
        elapsed = time.monotonic() - started
        for client in half:
            client.close()

    assert 100 == sum(closed)
    assert HEADER_TIMEOUT <= elapsed < HEADER_TIMEOUT + 2


async def test_an_idle_keep_alive_connection_is_closed(api_url: str) -> None:
    """After its answer, a connection idle for API_KEEP_ALIVE_SECONDS is closed."""
    async with api_with(api_url, api_keep_alive_seconds=1) as api:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.base_url.port)
        writer.write(b"GET /rankings HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        started = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), 5)  # the body, then the close
        elapsed = time.monotonic() - started
        writer.close()

    assert head.startswith(b"HTTP/1.1 200")
    assert rest
    assert 0.9 <= elapsed < 3


async def test_past_the_connection_limit_a_new_connection_is_refused_as_it_opens(
    api_url: str,
) -> None:
    """A connection past API_MAX_CONNECTIONS that sends nothing is answered 503 at once and
    closed cleanly (no reset), its file descriptor freed."""
    async with api_with(api_url, api_max_connections=20) as api:
        held = await connect(api, 20)
        reader, writer = await asyncio.open_connection("127.0.0.1", api.base_url.port)
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 5)  # until the server closes
        elapsed = time.monotonic() - started
        writer.close()
        for client in held:
            client.close()

    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
    assert answer.endswith(b"\r\n\r\nService Unavailable")
    assert elapsed < 1


async def test_past_the_connection_limit_requests_are_answered_503(api_url: str) -> None:
    """With API_MAX_CONNECTIONS connections open, another request gets 503, not silence; once
    they close, 200 again."""
    async with api_with(api_url, api_max_connections=20) as api:
        held = await connect(api, 20)
        during = await api.get("/rankings")
        for client in held:
            client.close()
        await asyncio.sleep(0.2)
        after = await api.get("/rankings")

    assert (503, "Service Unavailable") == (during.status_code, during.text)
    assert 200 == after.status_code


async def test_a_10_mb_body_on_a_get_is_refused(api_url: str, one_price: None) -> None:
    """A GET announcing a 10 MB body gets 413 before the body is read, and the connection is
    closed; httpx sending the whole body never gets a 200."""
    async with api_with(api_url) as api:
        head = f"GET {PRICES} HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * 2**20}\r\n\r\n"
        answer = await exchange(api, head.encode() + b"x" * 65536)
        try:
            whole = (await api.request("GET", PRICES, content=b"x" * 10 * 2**20)).status_code
        except httpx.TransportError:
            whole = None  # the server closed the connection while the body was still sent

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer.lower()
    assert answer.endswith(b'"detail":"request bodies are not accepted: every route is a GET"}')
    assert whole in (413, None)


async def test_a_chunked_body_is_refused(api_url: str) -> None:
    """Transfer-Encoding announces a body too: 413."""
    async with api_with(api_url) as api:
        answer = await exchange(
            api,
            b"GET /rankings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n",
        )

    assert answer.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("end", [b"\r\n\r\n", b""], ids=["complete", "endless"])
async def test_headers_over_16_kb_are_refused_with_431(api_url: str, end: bytes) -> None:
    """Request headers larger than 16 KiB, whole or still coming, are answered 431 and the
    connection closed."""
    async with api_with(api_url) as api:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.base_url.port)
        writer.write(b"GET /rankings HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + end)
        if not end:
            await asyncio.sleep(0.1)
            writer.write(b"a" * 1000)  # more of the same header
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()

    assert answer.startswith(b"HTTP/1.1 431 ")


OVERSIZED_HEADERS = {
    "15000-empty": b"a:\r\n" * 15_000,  # 60 kB of empty headers
    "2000-short": b"X-Short: 1\r\n" * 2_000,
    "101-short": b"X-Many: 1\r\n" * 101,
    "16384-bytes": b"X-Big: " + b"a" * 16_384 + b"\r\n",
    "60000-bytes": b"X-Big: " + b"a" * 60_000 + b"\r\n",
}


def exchange_raw(port: int, request: bytes) -> bytes:
    """Send raw bytes on a new connection; everything answered until the server closes (a
    reset shows as <reset> at the end)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request)
        answer = b""
        try:
            while data := client.recv(65536):
                answer += data
        except ConnectionResetError:
            answer += b"<reset>"
    return answer


def test_a_header_block_over_its_bounds_gets_one_431_and_a_clean_close(
    api_url: str, tmp_path: Path
) -> None:
    """Over 16 KiB or 100 headers in all, sent at once to `python -m api` (uvloop): exactly
    one answer, 431, then a close without a reset (before, 2,000 short headers got 200, and a
    16 KiB one a 431 and then a 400 on the same connection); 100 headers still get 200."""
    head = b"GET /rankings HTTP/1.1\r\nHost: x\r\n"
    with api_process(api_url, tmp_path / "api.log", API_WORKERS="1") as (port, _):
        answers = {
            name: exchange_raw(port, head + headers + b"\r\n")
            for name, headers in OVERSIZED_HEADERS.items()
        }
        hundred = exchange_raw(port, head + b"X-Ok: 1\r\n" * 98 + b"Connection: close\r\n\r\n")

    statuses = {name: answer.split(b"\r\n", 1)[0] for name, answer in answers.items()}
    assert {name: b"HTTP/1.1 431 Request Header Fields Too Large" for name in answers} == statuses
    assert {name: 1 for name in answers} == {n: a.count(b"HTTP/1.1 ") for n, a in answers.items()}
    assert [] == [name for name, answer in answers.items() if answer.endswith(b"<reset>")]
    assert hundred.startswith(b"HTTP/1.1 200 "), hundred[:200]


async def fresh_requests(port: int, count: int) -> list[int | str]:
    """`count` requests for /rankings, each on a new connection: its status, or the name of
    the error that stopped it."""
    outcomes: list[int | str] = []
    for _ in range(count):
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
                outcomes.append((await c.get("/rankings")).status_code)
        except httpx.TransportError as error:
            cause = error.__cause__ or error.__context__ or error
            outcomes.append(type(cause).__name__)
        await asyncio.sleep(0.05)
    return outcomes


async def idle_flood(port: int, count: int) -> list[socket.socket]:
    """`count` connections to `port` that send nothing."""
    loop = asyncio.get_running_loop()
    sockets = []
    for _ in range(count):
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, ("127.0.0.1", port))
        sockets.append(client)
    return sockets


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("idle", "settings", "open_files"),
    [
        (4_400, {}, None),
        (400, {"API_MAX_CONNECTIONS": "100"}, 300),
    ],
    ids=["defaults-4400-idle", "100-connections-400-idle-300-files"],
)
async def test_an_idle_flood_is_refused_never_reset(
    api_url: str,
    tmp_path: Path,
    idle: int,
    settings: dict[str, str],
    open_files: int | None,
) -> None:
    """More idle connections than API_MAX_CONNECTIONS from one client (with the defaults; and
    with 100 connections under a limit of 300 open files): fresh clients meanwhile get 200 or
    503, never a reset; the refused connections get a 503 and a clean close; the server never
    runs out of file descriptors; once the flood goes, 200 again."""
    log = tmp_path / "api.log"
    with (
        room_for(idle + 1024),
        api_process(api_url, log, open_files=open_files, API_WORKERS="1", **settings) as (
            port,
            pid,
        ),
    ):
        flood = await idle_flood(port, idle)
        try:
            during = await fresh_requests(port, 20)
            descriptors = open_descriptors(pid)
            limit = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
            loop = asyncio.get_running_loop()
            refused = []
            for client in flood[-10:]:  # the last ones came past the limit
                refused.append(await asyncio.wait_for(loop.sock_recv(client, 4096), 5))
        finally:
            for client in flood:
                client.close()
        await asyncio.sleep(0.5)
        after = await fresh_requests(port, 3)

    output = log.read_text(errors="replace")
    assert set(during) <= {200, 503}, during
    assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in refused), refused
    assert descriptors < limit, (descriptors, limit)
    assert [200, 200, 200] == after
    assert "Too many open files" not in output
    assert "Traceback" not in output
    assert 1 == output.count("API_MAX_CONNECTIONS reached"), output


def hang_up_on_pipelined_requests(port: int, connections: int) -> None:
    """Send 40 pipelined requests per connection and close it before reading the answers
    (half of them with a reset)."""
    paths = [b"/prices/kraken/btcusd", b"/rankings", b"/schema/openapi.json", b"/nope"]
    requests = b"".join(b"GET " + paths[k % 4] + b" HTTP/1.1\r\nHost: x\r\n\r\n" for k in range(40))
    for i in range(connections):
        client = socket.create_connection(("127.0.0.1", port))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if i % 2:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.sendall(requests)
        time.sleep(0.02 * (i % 4))
        if i % 3 == 0:
            client.recv(100)
        client.close()


@pytest.mark.slow
def test_a_client_hanging_up_on_pipelined_requests_logs_no_error(
    api_url: str, one_price: None, tmp_path: Path
) -> None:
    """Requests still queued when their client goes away are dropped quietly: no ERROR line
    (uvloop refuses writes to a closed connection, which uvicorn would log with a traceback)."""
    log = tmp_path / "api.log"
    with api_process(api_url, log) as (port, _):
        hang_up_on_pipelined_requests(port, connections=40)
        time.sleep(1)
        still = httpx.get(f"http://127.0.0.1:{port}{PRICES}", timeout=5).status_code

    output = log.read_text(errors="replace")
    assert 200 == still
    assert [] == [line for line in output.splitlines() if " ERROR " in line or "Traceback" in line]
