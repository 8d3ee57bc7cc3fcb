"""An answer whose status, headers and body are all known: sent as it is.

Litestar's `Response` builds its headers anew for every request (~10 % of a hot `/prices`
request, bench/RESULTS.md). A handler that returns an ASGI app is called with it as it is
(Litestar's "returning ASGI applications"), so a hot answer is sent through this instead:
its headers come prepared as bytes.
"""

from litestar.types import Receive, Scope, Send

JSON_TYPE = (b"content-type", b"application/json")


class RawResponse:
    """Status, header lines (lower-case names, as bytes) and a JSON body, sent in two ASGI
    events; the body's Content-Length and Content-Type are added here (none for a 304)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
        if status != 304:
            headers.append((b"content-length", b"%d" % len(body)))
            headers.append(JSON_TYPE)
        self.status, self.headers, self.body = status, headers, body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})
