"""Runs the real API app under uvicorn on a free 127.0.0.1 port, inside the test's event loop."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn

from api.app import create_app
from api.server import server_options
from datatracker.settings import Settings


@asynccontextmanager
async def serve_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Serve `create_app(settings)` over HTTP, as `python -m api` does, and yield a client
    whose base URL points at it."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, lifespan="on", **server_options(settings)
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await serving


async def until_cache_listens(client: httpx.AsyncClient) -> None:
    """Wait until /health says the response cache listens (it connects after the app starts)."""
    for _ in range(100):
        if (await client.get("/health")).json().get("response_cache") == "listening":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the response cache did not start listening within 5 s")
