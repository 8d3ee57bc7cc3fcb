"""What the API does with a request before Litestar routes it: HEAD as GET, no bodies, and
/prices answered from memory.

Litestar answers HEAD on a GET route with 405 and reads a request's body only when a handler
asks for it, so a GET may carry any body at all. `Api` answers HEAD with the GET's status
and headers, without the body (RFC 9110), and refuses every request body with 413 before it
is read, closing the connection, since no route takes one.

A /prices request whose pair's window is held is answered here (api/routes.py,
`answer_held`), timed and counted as its route would be: the same answer, without Litestar's
routing, exception layers, parameter parsing and dependencies, which cost more than the answer
itself (bench/RESULTS.md). Every other request, and a /prices request whose window is not
held, goes to Litestar.
"""

import logging
from time import perf_counter
from typing import Any, cast

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.serialization import encode_json
from litestar.types import HTTPScope, Message, Send

from api import metrics
from api.routes import MEMORY_TRIED, PRICES_ROUTE, answer_held

log = logging.getLogger("api")

BODY_REFUSED = encode_json(
    {"status_code": 413, "detail": "request bodies are not accepted: every route is a GET"}
)


def has_body(scope: HTTPScope) -> bool:
    """Whether the request announces a body: a non-zero Content-Length, or any
    Transfer-Encoding."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0 ")):
            return True
    return False


async def refuse_body(send: Send) -> None:
    """Answer 413 and have the server close the connection, the body unread."""
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY_REFUSED)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY_REFUSED, "more_body": False})


def without_body(send: Send) -> Send:
    """`send` with every response body emptied (the headers, Content-Length included, stay)."""

    async def send_headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_headers_only


class Api(Litestar):
    """The Litestar app, answering HEAD like GET, refusing request bodies, and sending held
    /prices answers before routing."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == ScopeType.HTTP:
            request = cast(HTTPScope, scope)
            if has_body(request):
                await refuse_body(send)
                return
            if request["method"] == "HEAD":
                scope = request = {**request, "method": "GET"}
                send = without_body(send)
            started = perf_counter()
            try:
                answer = await answer_held(request, self.state)
            except Exception:  # Litestar's handler, reading from SQL, answers instead
                log.exception("GET %s failed from memory", request["path"])
                request[MEMORY_TRIED] = True  # type: ignore[literal-required]
                answer = None
            if answer is not None:
                await answer(scope, receive, send)
                if self.state.settings.api_metrics:
                    seconds = perf_counter() - started
                    metrics.observe_request("GET", PRICES_ROUTE, answer.status, seconds)
                return
        await super().__call__(scope, receive, send)
