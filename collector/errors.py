"""How the collector tells failures apart, and names them in one line."""

import logging
import re
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg

from datatracker.database import redact_dsn

# Errors that mean "the database cannot be reached now", not "this data is wrong":
# connection failures, server shutdowns and restarts, a full disk, a pool timeout
# (psycopg_pool.PoolTimeout is an OperationalError), a deadlock or a cancelled statement.
# A cycle failing with one of these is tried again; with anything else it is set aside.
UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)

# A URL's scheme and host (and port), as ccxt names the request that failed.
_URL_HOST = re.compile(r"\b[a-zA-Z][\w+.-]*://[^\s/?#]+")
# A URL's query and fragment: left out of stored errors.
_URL_QUERY = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s?#]*)[?#]\S*")
# OpenSSL's `[SSL: CODE] ` prefix and `(_ssl.c:1006)` suffix around its reason.
_SSL_NOISE = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")


def storable(text: str) -> str:
    """`text` without NUL characters, which PostgreSQL text cannot hold."""
    return text.replace("\x00", "")


def describe(error: BaseException) -> str:
    """An exception as one short line fit to store: its class and, when a network failure lies
    under it (ccxt wraps aiohttp's), that failure; else its message's first line. URLs in it
    lose their query and password."""
    message = network_failure(error)
    if message is None:
        lines = storable(str(error)).strip().splitlines()
        message = lines[0] if lines else ""
    message = redact_dsn(_URL_QUERY.sub(r"\1", message))[:200]
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def log_failure(log: logging.Logger, what: str, error: BaseException) -> None:
    """Log that `what` failed: one line when the network failed under it (a traceback would
    say no more), else with the traceback."""
    if network_failure(error) is not None:
        log.warning("%s: %s", what, describe(error))
    else:
        log.error("%s", what, exc_info=error)


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it was raised from or while handling, as a traceback shows them."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        context = None if link.__suppress_context__ else link.__context__
        link = link.__cause__ if link.__cause__ is not None else context


def network_failure(error: BaseException) -> str | None:
    """What failed on the network under `error`, in words: the deepest cause that says."""
    chain = list(causes(error))
    address = next(filter(None, map(connected_to, chain)), None) or next(
        filter(None, map(requested_from, chain)), None
    )
    for link in reversed(chain[1:]):
        failure = name_failure(link, address)
        if failure is not None:
            return failure
    return None


def connected_to(error: BaseException) -> tuple[str, int | None] | None:
    """The host and port of a connection that failed, as aiohttp's connector errors hold them."""
    host, port = getattr(error, "host", None), getattr(error, "port", None)
    if not isinstance(host, str) or not host:
        return None
    return host, port if isinstance(port, int) else None


def requested_from(error: BaseException) -> tuple[str, int | None] | None:
    """The host and port of the first URL in `error`'s message (ccxt names its request)."""
    found = _URL_HOST.search(str(error))
    try:
        url = urlsplit(found.group()) if found else None
        return (url.hostname, url.port) if url and url.hostname else None
    except ValueError:  # a port that is no number
        return None


def name_failure(error: BaseException, address: tuple[str, int | None] | None) -> str | None:
    """`error` in words if it is a network failure (a name that does not resolve, a refused
    or reset connection, TLS, a timeout), else None."""
    host = address[0] if address else "the server"
    if isinstance(error, socket.gaierror):
        name = f"host {address[0]}" if address else "the host name"
        return f"cannot resolve {name} (no network or DNS)"
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "verify_message", None) or _SSL_NOISE.sub("", str(error))
        return f"TLS failed with {host}: {reason}"
    if isinstance(error, ConnectionRefusedError):
        port = f":{address[1]}" if address and address[1] is not None else ""
        return f"connection refused by {host}{port} (nothing listening)"
    if isinstance(error, ConnectionResetError):
        return f"connection reset by {host}"
    if isinstance(error, TimeoutError):
        return f"no answer from {host} in time"
    if isinstance(error, OSError) and error.strerror:
        return f"cannot reach {host}: {error.strerror}"
    return None
