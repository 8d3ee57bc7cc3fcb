"""A minimal Litestar app: one route answering a constant JSON body, the ceiling the API is
measured against (`python -m bench.minimal_app --port P --body-file F`).

Served by uvicorn with the API's own server options (`api.server.server_options`: its
httptools protocol, keep-alive, connection limit, access log or none as API_ACCESS_LOG says)
in one process, so the difference to `python -m api` with API_WORKERS=1 is only what the API
does per request.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from litestar import Litestar, MediaType, Response, get

from api.server import server_options
from bench.http_load import LOOPBACK
from datatracker.settings import Settings


def create_app(body: bytes, gzip: bool = False) -> Litestar:
    """An app whose only route, `/prices/{exchange}/{symbol}`, answers `body` as JSON (with
    `Content-Encoding: gzip` if `gzip`: the body is then the compressed bytes)."""
    headers = {"Content-Encoding": "gzip"} if gzip else {}

    @get("/prices/{exchange:str}/{symbol:str}", media_type=MediaType.JSON)
    async def constant(exchange: str, symbol: str) -> Response[bytes]:
        return Response(body, media_type=MediaType.JSON, headers=headers)

    return Litestar(route_handlers=[constant], openapi_config=None)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.minimal_app", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True, help="the constant body")
    parser.add_argument("--gzip", action="store_true", help="the body is gzip-compressed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    app = create_app(args.body_file.read_bytes(), gzip=args.gzip)
    options = server_options(Settings(database_url="postgresql://unused"))
    uvicorn.run(app, host=LOOPBACK, port=args.port, **options)


if __name__ == "__main__":
    main()
