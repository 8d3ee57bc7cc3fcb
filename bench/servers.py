"""Start the API (and the original read) as separate processes on loopback, and stop them."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.http_load import LOOPBACK

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def wait_until_listening(process: subprocess.Popen[bytes], port: int, seconds: float) -> None:
    """Return once the port accepts connections; raise if the process exits or is too slow."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server not listening on {port} after {seconds:g} s")


@contextmanager
def serving(
    command: Sequence[str], port: int, env: dict[str, str], checkout: Path = REPO
) -> Iterator[int]:
    """Run `command` (a server on `port`) from `checkout`'s code, in a scratch directory.

    Yields the server's pid and stops it afterwards.
    """
    with tempfile.TemporaryDirectory() as scratch:  # no stray .env is read
        environment = os.environ | env | {"PYTHONPATH": str(checkout)}
        argv = [sys.executable, *command]  # this interpreter, our own modules
        process = subprocess.Popen(argv, cwd=scratch, env=environment)
        try:
            wait_until_listening(process, port, seconds=30)
            yield process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def api_environment(database_url: str, port: int) -> dict[str, str]:
    """The settings `python -m api` reads, for a benchmark run (default pool size)."""
    return {
        "DATABASE_URL": database_url,
        "API_HOST": LOOPBACK,
        "API_PORT": str(port),
    }


@contextmanager
def tracker_api(
    database_url: str, checkout: Path = REPO, **settings: str
) -> Iterator[tuple[int, int]]:
    """The real API (`python -m api`, from `checkout`) on a free port: yields (port, pid).
    `settings` are more of its environment variables, e.g. API_CACHE_MB="0"."""
    port = free_port()
    env = api_environment(database_url, port) | settings
    with serving(["-m", "api"], port, env, checkout) as pid:
        yield port, pid


@contextmanager
def original_api(database_url: str) -> Iterator[tuple[int, int]]:
    """The original read (`python -m bench.original_api`) on a free port: yields (port, pid)."""
    port = free_port()
    command = ["-m", "bench.original_api", "--database-url", database_url, "--port", str(port)]
    with serving(command, port, {}) as pid:
        yield port, pid


def resident_bytes(pid: int) -> int:
    """A process's resident set size (VmRSS), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def process_tree_rss(pid: int) -> dict[int, int]:
    """RSS of a process and of its children (uvicorn's workers), bytes by pid."""
    found = {pid: resident_bytes(pid)}
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found |= process_tree_rss(int(child))
    return found


def serving_rss(pid: int) -> int:
    """The RSS of the processes that serve: uvicorn's workers if there are any (not its
    supervisor nor multiprocessing's resource tracker), else `pid`."""
    tree = process_tree_rss(pid)
    workers = [
        rss
        for child, rss in tree.items()
        if child != pid and b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    return sum(workers) or tree[pid]
