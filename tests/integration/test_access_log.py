"""A log line per request only when API_ACCESS_LOG asks for one: at thousands of requests a
second the lines would drown the service's own and cost each worker ~30 µs a request."""

from pathlib import Path

import httpx

from tests.api_server import api_process
from tests.integration.conftest import ONE_PRICE as PRICES


def answer_twice(api_url: str, log: Path, **settings: str) -> None:
    with api_process(api_url, log, API_WORKERS="1", LOG_LEVEL="INFO", **settings) as (port, _):
        for _ in range(2):
            assert 200 == httpx.get(f"http://127.0.0.1:{port}{PRICES}", timeout=5).status_code


def requests_logged(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if f'"GET {PRICES} HTTP/1.1"' in line]


def test_requests_are_not_logged_by_default(api_url: str, one_price: None, tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    answer_twice(api_url, log)
    assert " INFO api: serving on 127.0.0.1:" in log.read_text()  # INFO lines are written
    assert [] == requests_logged(log)
    assert "uvicorn.access" not in log.read_text()


def test_api_access_log_logs_each_request(api_url: str, one_price: None, tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    answer_twice(api_url, log, API_ACCESS_LOG="true")
    logged = requests_logged(log)
    assert 2 == len(logged)
    assert all(" INFO uvicorn.access: 127.0.0.1:" in line for line in logged)
    assert all(line.endswith(" 200") for line in logged)
