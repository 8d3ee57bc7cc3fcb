"""Runs the real API app under uvicorn on a free 127.0.0.1 port, inside the test's event loop."""

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn

from api.app import create_app
from api.server import server_options
from datatracker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def api_process(
    api_url: str, log: Path, *, open_files: int | None = None, **settings: str
) -> Iterator[tuple[int, int]]:
    """`python -m api` (uvloop, as deployed) as the role `api`, with more `settings` in its
    environment, logging to `log`; its port, once it answers, and its process id. With
    `open_files`, it starts with that limit of open files, soft and hard."""

    def limit_open_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": api_url,
        "API_PORT": str(port),
        "PYTHONPATH": str(ROOT),
        **settings,
    }
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"],
            cwd=log.parent,
            env=env,
            stdout=output,
            stderr=output,
            preexec_fn=limit_open_files,  # only setrlimit, before exec
        )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/rankings", timeout=1)
                break
            time.sleep(0.1)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=15)
