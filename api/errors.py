"""Error answers that say what was wrong without echoing much of it back."""

from typing import Any

from litestar import Request, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException

# A 400 shows at most this many characters of the value it refuses.
SHOWN_CHARS = 32
# and at most this many in all of its detail (Litestar's names the method and the path).
DETAIL_CHARS = 96


def clip(value: str, limit: int = SHOWN_CHARS) -> str:
    """`value` quoted, cut to its first `limit` characters (marked with …) when longer."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}…"


def shorten(text: str, limit: int = DETAIL_CHARS) -> str:
    """`text` cut to `limit` characters, marked with … when cut."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def bad_request(request: Request[Any, Any, State], error: HTTPException) -> Response[Any]:
    """A 400 as JSON, its detail and messages shortened: Litestar's would repeat the whole
    path or query, however long."""
    body: dict[str, Any] = {"status_code": error.status_code, "detail": shorten(error.detail)}
    if isinstance(error.extra, list):
        body["extra"] = [shorten_values(item) for item in error.extra]
    return Response(body, status_code=error.status_code)


def shorten_values(item: object) -> object:
    """A dict with its text values shortened; anything else as it is."""
    if not isinstance(item, dict):
        return item
    return {key: shorten(value) if isinstance(value, str) else value for key, value in item.items()}
