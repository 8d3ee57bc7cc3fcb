"""How uvicorn serves the API: bounded time and memory per connection, and a connection limit.

uvicorn closes a connection idle between requests (`timeout_keep_alive`) but never one that
has not finished sending a request's headers: a client that connects and sends nothing, or
half a request, would hold its socket (and a file descriptor) forever. `Protocol` closes such
a connection after API_HEADER_TIMEOUT_SECONDS and answers 431 to a header block over
MAX_HEADER_BYTES or MAX_HEADERS headers, as uvicorn's h11 protocol does but its httptools
protocol does not; one answer per bad request, then the connection is closed.

Past API_MAX_CONNECTIONS open connections, uvicorn would accept every further connection and
answer 503 only once a request arrives, so idle connections beyond the limit held file
descriptors until none were left, and the event loop then accepted and closed connections
unanswered (fresh clients saw ConnectionResetError). `Protocol` refuses a connection past the
limit as it opens: a 503, then a lingering close. At most a quarter of the limit linger at
once; past that the oldest of them is closed. `allow_open_files` keeps enough descriptors
for all of it and SPARE_FILES more, so the process never runs out.
"""

import asyncio
import errno
import logging
import resource
import socket
import time
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from datatracker.settings import Settings

# A request's line and headers may take this many bytes (h11's default in uvicorn), and
# hold this many headers (as Python's http.client reads at most).
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
# A refused connection is closed the way a server should close one with a request perhaps
# still coming: the answer, then this side's half, then whatever the client still sends read
# and dropped until it closes its half or this many seconds pass. Closing with unread bytes
# would send the client a reset instead of the answer.
LINGER_SECONDS = 2.0
# At most one line this often about connections refused past API_MAX_CONNECTIONS.
REFUSALS_LOG_SECONDS = 60.0
# Seconds a stopping server gives the answers under way.
GRACEFUL_SHUTDOWN_SECONDS = 5
# File descriptors kept for what is not a client connection: the database pool, the cache's
# listener, logs, the event loop.
SPARE_FILES = 64

_TOO_LARGE_BODY = b'{"status_code":431,"detail":"request headers over 16384 bytes or 100 fields"}'
HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)

SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 19\r\nconnection: close\r\n\r\nService Unavailable"
)

log = logging.getLogger(__name__)


def refusing_limit(max_connections: int) -> int:
    """How many connections past `max_connections` may be lingering in refusal at once."""
    return max(16, max_connections // 4)


class Refusals:
    """The connections of this process being refused, and one log line a minute about them."""

    def __init__(self) -> None:
        self.lingering: dict[Protocol, None] = {}  # oldest first
        self._unsaid = 0
        self._said_at = -REFUSALS_LOG_SECONDS

    def count(self, open_connections: int) -> None:
        """Count a connection refused with `open_connections` open; say so once a minute."""
        self._unsaid += 1
        now = time.monotonic()
        if now - self._said_at >= REFUSALS_LOG_SECONDS:
            log.warning(
                "refused %d connection(s) with 503: %d open, API_MAX_CONNECTIONS reached",
                self._unsaid,
                open_connections,
            )
            self._unsaid, self._said_at = 0, now

    def make_room(self, most: int) -> None:
        """Close the oldest lingering refusals until at most `most` linger: each had its
        answer and this side's close already, and most often its client sent nothing."""
        while len(self.lingering) > most:
            oldest = next(iter(self.lingering))
            del self.lingering[oldest]
            oldest.transport.close()


REFUSALS = Refusals()


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit on request headers, and
    which tells every request of a connection when the client goes away.

    uvicorn tells only the connection's newest request; one started from a pipeline before
    then goes on writing to the closed connection, which uvloop refuses with RuntimeError,
    logged as an ERROR with a traceback for a mere client that hung up.
    """

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The limit is kept here, enforced as connections open; uvicorn's own check (503 to
        # each request past it) is switched off.
        self.max_connections, self.limit_concurrency = self.limit_concurrency, None
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_bytes: int | None = 0  # None while no request's headers are awaited
        self._headers_parsed = (0, 0)  # the request's headers so far: how many, their bytes
        self._refused = False
        self._started: weakref.WeakSet[RequestResponseCycle] = weakref.WeakSet()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            self.connections.discard(self)
            REFUSALS.count(len(self.connections))
            REFUSALS.make_room(refusing_limit(self.max_connections) - 1)
            self._refuse(SERVICE_UNAVAILABLE)
            return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        REFUSALS.lingering.pop(self, None)
        for cycle in [*self._started, *(queued for queued, _ in self.pipeline)]:
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._started.add(cycle)
        super()._start_asgi_task(cycle, app)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return  # read and dropped while a refused connection lingers
        if self._header_bytes is None and (self.cycle is None or self.cycle.response_complete):
            self._await_headers()  # the first bytes of the next request on this connection
        if self._header_bytes is not None:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._header_bytes is not None and self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(HEADERS_TOO_LARGE)  # and still no end to them

    # The parser's callbacks, for one request: none after it was refused (the parser goes on
    # through the rest of the bytes it was given; uvicorn would answer them a second time).

    def on_message_begin(self) -> None:
        if not self._refused:
            self._headers_parsed = (0, 0)
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        count, size = self._headers_parsed[0] + 1, self._headers_parsed[1] + len(name) + len(value)
        self._headers_parsed = count, size + 4  # ": " and CRLF
        if count > MAX_HEADERS or len(self.url) + size + 4 > MAX_HEADER_BYTES:
            self._refuse(HEADERS_TOO_LARGE)
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_deadline()
        self._header_bytes = None
        if self._refused:
            return
        if len(self.url) + self._headers_parsed[1] > MAX_HEADER_BYTES:
            self._refuse(HEADERS_TOO_LARGE)
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            self._refused = True
            super().send_400_response(msg)

    def _refuse(self, answer: bytes) -> None:
        """Answer `answer` (it says `connection: close`), then close lingering: this side's
        half at once, the rest once the client closes its own or LINGER_SECONDS pass."""
        self._stop_deadline()
        self._refused = True
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(answer)
        transport.resume_reading()  # a pipeline may have paused it: drop what comes
        if transport.can_write_eof():
            transport.write_eof()
        REFUSALS.lingering[self] = None
        self.loop.call_later(LINGER_SECONDS, transport.close)

    def _await_headers(self) -> None:
        self._header_bytes = 0
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _stop_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol(settings: Settings) -> type[Protocol]:
    """The protocol class with this configuration's header deadline."""
    return type("Protocol", (Protocol,), {"header_timeout": settings.api_header_timeout_seconds})


def server_options(settings: Settings, max_connections: int | None = None) -> dict[str, Any]:
    """uvicorn's options for the API, less where it listens."""
    return {
        "http": protocol(settings),
        "timeout_keep_alive": settings.api_keep_alive_seconds,
        "limit_concurrency": max_connections or settings.api_max_connections,
        # On SIGTERM, answers under way get this long; then uvicorn cancels them and exits
        # rather than wait on a connection that never completes.
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "log_config": None,  # keep our log format
        "access_log": settings.api_access_log,
    }


def allow_open_files(connections: int) -> int:
    """Raise this process's soft limit of open files towards what `connections` need, with
    those being refused past them (up to the hard limit), and return how many connections it
    allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + refusing_limit(connections) + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    allowed = connections
    if soft != resource.RLIM_INFINITY:
        room = soft - SPARE_FILES
        allowed = min(connections, room * 4 // 5, room - refusing_limit(0))
    if allowed < connections:
        log.warning(
            "API_MAX_CONNECTIONS=%d lowered to %d: the open-file limit is %d (ulimit -n)",
            connections,
            allowed,
            soft,
        )
    return max(allowed, 1)


class ListenAddressError(Exception):
    """API_HOST and API_PORT name no address this process can listen on; says which, why."""


def check_listen_address(host: str, port: int) -> None:
    """Raise ListenAddressError, in one line naming the setting, unless `host` resolves and
    `port` can be bound there as uvicorn binds it (IPv6 for a host with a colon, else IPv4;
    SO_REUSEADDR). Run before the workers start: uvicorn's own failure names neither setting,
    and with one worker comes only after the app has started."""
    if not host:
        raise ListenAddressError("API_HOST is empty: give an address (0.0.0.0: every interface)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        resolved = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
        raise ListenAddressError(f"API_HOST={host} cannot be resolved ({reason})") from None
    try:  # socket() too: an IPv6 address where IPv6 is off fails there
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(resolved[0][4])
    except OSError as error:
        raise ListenAddressError(bind_failure(host, port, error)) from None


def bind_failure(host: str, port: int, error: OSError) -> str:
    """Why `host`:`port` cannot be bound, naming the setting to change."""
    if error.errno == errno.EADDRINUSE:
        return f"API_PORT={port}: {host}:{port} is in use by another process"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"API_HOST={host} is not an address of this machine"
    if error.errno == errno.EACCES:
        return f"API_PORT={port}: permission denied (ports below 1024 need privileges)"
    return f"API_HOST={host}, API_PORT={port}: cannot listen ({error.strerror})"
