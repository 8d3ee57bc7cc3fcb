"""How uvicorn serves the API: bounded time and memory per connection, and a connection limit.

uvicorn closes a connection idle between requests (`timeout_keep_alive`) but never one that
has not finished sending a request's headers: a client that connects and sends nothing, or
half a request, would hold its socket (and a file descriptor) forever. `Protocol` closes such
a connection after API_HEADER_TIMEOUT_SECONDS and answers 431 to headers larger than
MAX_HEADER_BYTES, as uvicorn's h11 protocol does but its httptools protocol does not. Past
API_MAX_CONNECTIONS open connections, uvicorn answers every request 503 until some close.
"""

import asyncio
import logging
import resource
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from datatracker.settings import Settings

# A request's line and headers may take this many bytes (h11's default in uvicorn).
MAX_HEADER_BYTES = 16 * 1024
# Seconds a stopping server gives the answers under way.
GRACEFUL_SHUTDOWN_SECONDS = 5
# File descriptors kept for what is not a client connection: the database pool, the cache's
# listener, logs, the event loop.
SPARE_FILES = 64

_TOO_LARGE_BODY = b'{"status_code":431,"detail":"request headers over 16384 bytes"}'
HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)

log = logging.getLogger(__name__)


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
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_bytes: int | None = 0  # None while no request's headers are awaited
        self._started: weakref.WeakSet[RequestResponseCycle] = weakref.WeakSet()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        for cycle in [*self._started, *(queued for queued, _ in self.pipeline)]:
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._started.add(cycle)
        super()._start_asgi_task(cycle, app)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._header_bytes is None and (self.cycle is None or self.cycle.response_complete):
            self._await_headers()  # the first bytes of the next request on this connection
        if self._header_bytes is not None:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._header_bytes is not None and self._header_bytes > MAX_HEADER_BYTES:
            self._refuse_headers()  # and still no end to them

    def on_headers_complete(self) -> None:
        self._stop_deadline()
        self._header_bytes = None
        if len(self.url) + sum(len(name) + len(value) for name, value in self.headers) > (
            MAX_HEADER_BYTES
        ):
            self._refuse_headers()
            return
        super().on_headers_complete()

    def _refuse_headers(self) -> None:
        self._stop_deadline()
        if not self.transport.is_closing():
            self.transport.write(HEADERS_TOO_LARGE)
            self.transport.close()

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
    }


def allow_open_files(connections: int) -> int:
    """Raise this process's soft limit of open files towards what `connections` need (up to
    the hard limit) and return how many connections it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    allowed = connections
    if soft != resource.RLIM_INFINITY:
        allowed = min(connections, soft - SPARE_FILES)
    if allowed < connections:
        log.warning(
            "API_MAX_CONNECTIONS=%d lowered to %d: the open-file limit is %d (ulimit -n)",
            connections,
            allowed,
            soft,
        )
    return max(allowed, 1)
