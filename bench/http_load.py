"""A small closed-loop HTTP/1.1 load generator: N clients, keep-alive, loopback only.

Each client sends a request, waits for the whole response, records its latency and sends
the next, until the duration or the request budget is spent. Plain asyncio streams rather
than an HTTP library, so the generator spends as little of the machine's two cores as it can.
"""

import asyncio
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import stats

LOOPBACK = "127.0.0.1"
# The header a client sends to accept gzip bodies, as browsers and most HTTP libraries do.
ACCEPT_GZIP = "Accept-Encoding: gzip"


@dataclass
class Tally:
    """What the clients saw: latencies of answered requests and counts by status."""

    latencies: list[float] = field(default_factory=list)
    # When each answered request was sent (time.monotonic()), in the order of `latencies`.
    sent_at: list[float] = field(default_factory=list)
    # Each answered request's status, in the order of `latencies`.
    answered: list[int] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    sent: int = 0


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response whole (Content-Length bodies only); return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    length = {name.strip().lower(): value for name, value in headers.items()}.get(
        "content-length", "0" if status in (204, 304) else None
    )
    if length is None:
        raise ValueError(f"a {status} answer without Content-Length")
    await reader.readexactly(int(length))
    return status


async def client(
    port: int,
    paths: Sequence[str],
    rng: random.Random,
    deadline: float,
    budget: int,
    tally: Tally,
    headers: Mapping[str, str] | None = None,
    common: str = "",
) -> None:
    """One keep-alive connection sending requests for random paths until told to stop;
    `headers` maps a path to more header lines sent with it (e.g. `If-None-Match: "…"`),
    `common` is header lines sent with every request (e.g. `Accept-Encoding: gzip`)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    everywhere = f"{common}\r\n" if common else ""
    extra = {path: f"{lines}\r\n" for path, lines in (headers or {}).items()}
    try:
        while time.monotonic() < deadline and tally.sent < budget:
            tally.sent += 1
            path = rng.choice(paths)
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n{everywhere}{extra.get(path, '')}\r\n"
            )
            sent_at = time.monotonic()
            started = time.perf_counter()
            writer.write(request.encode())
            status = await read_response(reader)
            tally.latencies.append(time.perf_counter() - started)
            tally.sent_at.append(sent_at)
            tally.answered.append(status)
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run_load(
    port: int,
    paths: Sequence[str],
    *,
    clients: int,
    seconds: float,
    max_requests: int,
    seed: int = 1,
    grace: float = 60.0,
    headers: Mapping[str, str] | None = None,
    common: str = "",
    tally: Tally | None = None,
) -> dict[str, object]:
    """Load the server with `clients` concurrent clients; return rate, p50, p99 and statuses.

    Requests still in flight `grace` seconds after the duration are abandoned and counted
    as errors. `headers`: more header lines per path; `common`: header lines for every
    request; `tally`: where to record (to read each request's latency and time afterwards).
    """
    tally = Tally() if tally is None else tally
    deadline = time.monotonic() + seconds
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(
            client(
                port,
                paths,
                random.Random(seed * 1000 + i),
                deadline,
                max_requests,
                tally,
                headers,
                common,
            )
        )
        for i in range(clients)
    ]
    done, pending = await asyncio.wait(tasks, timeout=seconds + grace)
    for task in pending:
        task.cancel()
    tally.errors = len(pending) + sum(1 for task in done if task.exception() is not None)
    return summarise(tally, time.perf_counter() - started, clients)


def summarise(tally: Tally, elapsed: float, clients: int) -> dict[str, object]:
    """Requests per second and latency percentiles in milliseconds."""
    latencies = sorted(tally.latencies)
    return {
        "clients": clients,
        "requests": len(latencies),
        "seconds": elapsed,
        "requests_per_second": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": stats.percentile(latencies, 0.50) * 1000,
        "p99_ms": stats.percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1000,
        "statuses": dict(tally.statuses),
        "errors": tally.errors,
    }


def get(port: int, path: str, gzip: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One GET on loopback: status, headers (lower-case names) and body (as sent: still
    compressed if `gzip` asked for it)."""
    accept = {"Accept-Encoding": "gzip"} if gzip else {}
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", headers=accept)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
            headers = {name.lower(): value for name, value in answer.headers.items()}
            return answer.status, headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, {}, error.read()


def health(port: int) -> dict[str, Any]:
    """`/health`'s body (whichever worker answers)."""
    _, _, body = get(port, "/health")
    answer: dict[str, Any] = json.loads(body)
    return answer


async def warm_paths(port: int, paths: Sequence[str], clients: int) -> dict[str, Any]:
    """Request every path once, `clients` connections each taking the next path in turn."""
    queue = iter(paths)
    statuses: dict[int, int] = {}

    async def one() -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            for path in queue:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n".encode())
                status = await read_response(reader)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    return {"seconds": time.perf_counter() - started, "requests": len(paths), "statuses": statuses}


def warm(port: int, paths: Sequence[str], clients: int, rounds: int = 1) -> dict[str, Any]:
    """Warm the windows (each round on new connections, so that every worker gets some)."""
    runs = [asyncio.run(warm_paths(port, paths, clients)) for _ in range(rounds)]
    return {"rounds": runs, "seconds": sum(run["seconds"] for run in runs)}
