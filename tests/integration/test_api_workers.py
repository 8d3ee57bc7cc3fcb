"""`python -m api` with API_WORKERS processes: each answers on its own, the same bytes."""

from pathlib import Path

import httpx
import psycopg

from tests.api_server import api_process


def worker_pids(parent: int) -> list[int]:
    """The processes uvicorn spawned to serve (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


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
