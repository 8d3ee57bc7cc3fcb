"""`python -m api` with API_WORKERS processes: each answers on its own, the same bytes."""

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.api_server import api_process

# How long the workers of a killed parent may take to stop (uvicorn's graceful stop).
ORPHAN_SECONDS = 15


def worker_pids(parent: int) -> list[int]:
    """The processes uvicorn spawned to serve (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def running(pid: int) -> bool:
    """Whether the process is alive (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_two_workers_serve_the_same_answers(history: str, api_url: str, tmp_path: Path) -> None:
    """API_WORKERS=2 runs two serving processes; over 40 fresh connections (spread by the
    kernel between them) a pair's answer and ETag never differ."""
    with psycopg.connect(history) as conn:
        row = conn.execute("SELECT exchange, symbol FROM markets ORDER BY id LIMIT 1").fetchone()
    assert row is not None
    path = f"/prices/{row[0]}/{row[1]}"
    with api_process(api_url, tmp_path / "api.log", API_WORKERS="2") as (port, parent):
        answers = set()
        for _ in range(40):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                response = client.get(path)
                answers.add((response.status_code, response.headers["etag"], response.content))
        pids = worker_pids(parent)
    assert 2 == len(pids)
    assert 1 == len(answers)
    assert 200 == next(iter(answers))[0]


def test_workers_exit_when_their_parent_is_killed(api_url: str, tmp_path: Path) -> None:
    """SIGKILLing `python -m api`'s main process (API_WORKERS=2) ends both workers within
    ORPHAN_SECONDS, and the port is free for the next start."""
    with api_process(api_url, tmp_path / "api.log", API_WORKERS="2") as (port, parent):
        assert 200 == httpx.get(f"http://127.0.0.1:{port}/rankings").status_code
        pids = worker_pids(parent)
        assert 2 == len(pids)
        os.kill(parent, signal.SIGKILL)
        deadline = time.monotonic() + ORPHAN_SECONDS
        while any(map(running, pids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [] == [pid for pid in pids if running(pid)], (tmp_path / "api.log").read_text()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/rankings", timeout=2)
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))  # raises while a worker still listens
            listener.listen()
