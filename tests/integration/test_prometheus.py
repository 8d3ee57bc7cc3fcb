"""A real Prometheus (Debian's `prometheus`) scrapes a running API and a running collector.

One stack per module: a fresh database, `python -m collector` on simulated prices at 1 s
cycles (role collector), `python -m api` with two workers (role api, prometheus-client's
multiprocess mode) and Prometheus on 127.0.0.1, scraping both every second with the targets
of prometheus/prometheus.yml moved to the test's ports. The tests ask Prometheus' HTTP API
for each series the services export, and evaluate every PromQL panel of the Service
dashboard as Grafana would.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import FOLLOW_SECONDS
from datatracker.settings import load_settings
from datatracker.storage import StorageMode
from tests.api_server import ROOT, api_process, free_port, serve_api
from tests.conftest import as_role, execute, with_dbname
from tests.grafana_macros import PromQuery, promql_queries
from tests.integration.background_jobs import POLICIES
from tests.integration.collector_process import collectors, stored_cycles, until

pytestmark = pytest.mark.slow

PROMETHEUS = shutil.which("prometheus")
PRICES_ROUTE = "/prices/{exchange}/{symbol}"
EXCHANGES = ("kraken", "coinbase")
# What Grafana puts for $__rate_interval at a 1 s scrape (at least four scrapes).
RATE_INTERVAL = "15s"
# TimescaleDB's jobs, as the API exports them (api/metrics.py, from api/jobs.py).
JOB_SERIES = "datatracker_timescaledb_job_consecutive_failures"
# Requests by method, route template and status: the latency histogram's count.
REQUESTS = "datatracker_api_request_duration_seconds_count"


@dataclass(frozen=True)
class Stack:
    prometheus: str  # Prometheus' base URL
    api: str  # the API's base URL
    collector_metrics: str  # the collector's metrics URL


def prometheus_config(api_port: int, collector_port: int) -> dict[str, Any]:
    """prometheus/prometheus.yml, scraping every second, its targets on 127.0.0.1."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    ports = {"api": api_port, "collector": collector_port}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    return config


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """The instant vector Prometheus' /api/v1/query answers for `expr` (an error fails)."""
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.headers["content-type"] == "application/json", response.text
    answer = response.json()
    assert "success" == answer["status"], answer
    return list(answer["data"]["result"])


def values(prometheus: str, expr: str) -> list[float]:
    return [float(sample["value"][1]) for sample in query(prometheus, expr)]


def wait_for(prometheus: str, expr: str, seconds: float = 30) -> list[float]:
    """The values of `expr` once it returns a series."""
    deadline = time.monotonic() + seconds
    while not (found := values(prometheus, expr)):
        assert time.monotonic() < deadline, f"no series for {expr} within {seconds:g} s"
        time.sleep(0.5)
    return found


def until_answers(
    url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 30
) -> str:
    """The body of `url` once it answers 200; fails, with the process's log, if it exits."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, f"exited with {process.returncode}: {log.read_text()}"
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code == 200:
                return response.text
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {seconds:g} s"
        time.sleep(0.2)


def drive_requests(api: str, database_url: str) -> None:
    """Every route: each pair's /prices (read from SQL, then held), an unknown pair (404),
    /rankings and /health."""
    with psycopg.connect(database_url) as conn:
        pairs = conn.execute("SELECT exchange, symbol FROM markets ORDER BY id").fetchall()
    assert pairs
    with httpx.Client(base_url=api, timeout=10) as client:
        for _ in range(5):
            for exchange, symbol in pairs:
                assert 200 == client.get(f"/prices/{exchange}/{symbol}").status_code
            assert 404 == client.get("/prices/kraken/nosuchpair").status_code
            client.get("/rankings")
            client.get("/health")


@pytest.fixture(scope="module")
def stack(
    database_server: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The collector, the API and Prometheus scraping them, on one fresh database."""
    if PROMETHEUS is None:
        pytest.fail("Debian's prometheus package is not installed (.ci/run installs it)")
    workdir = tmp_path_factory.mktemp("prometheus-stack")
    name = f"datatracker_test_{secrets.token_hex(4)}"
    execute(database_server, "CREATE DATABASE {} TEMPLATE {}", name, template_database)
    database_url = with_dbname(database_server, name)
    collector_port = free_port()
    try:
        with (
            collectors(
                workdir,
                DATABASE_URL=as_role(database_url, "collector"),
                COLLECT_INTERVAL_SECONDS="1",
                SUPPORTED_EXCHANGES=",".join(EXCHANGES),
                SIMULATED_PAIRS_PER_EXCHANGE="3",
                GAP_FILL_MAX_HOURS="0",
                METRICS_PORT=str(collector_port),
            ) as processes,
            api_process(
                as_role(database_url, "api"),
                workdir / "api.log",
                API_WORKERS="2",
                COLLECT_INTERVAL_SECONDS="1",
            ) as (api_port, _),
        ):
            collector = processes.start()
            collector_log = workdir / "collector-0.log"
            until_answers(f"http://127.0.0.1:{collector_port}/metrics", collector, collector_log)
            prometheus_port = free_port()  # chosen once the API and the collector hold theirs
            config = workdir / "prometheus.yml"
            config.write_text(yaml.safe_dump(prometheus_config(api_port, collector_port)))
            prometheus_log = workdir / "prometheus.log"
            with prometheus_log.open("w") as log:
                prometheus = subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={workdir / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prometheus_port}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=log,
                )
            try:
                stack = Stack(
                    f"http://127.0.0.1:{prometheus_port}",
                    f"http://127.0.0.1:{api_port}",
                    f"http://127.0.0.1:{collector_port}/metrics",
                )
                ready = until_answers(f"{stack.prometheus}/-/ready", prometheus, prometheus_log)
                assert "Prometheus" in ready, ready  # not another server on that port
                wait_for(
                    stack.prometheus, 'datatracker_collector_cycles_total{outcome="written"} > 2'
                )
                drive_requests(stack.api, database_url)
                # Two scrapes of each after the requests: every rate() has samples to go on.
                wait_for(
                    stack.prometheus,
                    'datatracker_api_request_duration_seconds_count{status_code="404"} >= 5',
                )
                time.sleep(2.5)
                yield stack
            finally:
                prometheus.terminate()
                prometheus.wait(timeout=15)
    finally:
        execute(database_server, "DROP DATABASE {} WITH (FORCE)", name)


# (PromQL, what it must give): each series the services export, and a bound its value meets.
SERIES = {
    # Both targets scraped.
    'up{job="api"}': lambda v: v == [1],
    'up{job="collector"}': lambda v: v == [1],
    # The API: requests by route template and status, latency, errors.
    f'sum({REQUESTS}{{path="{PRICES_ROUTE}",status_code="200"}})': lambda v: v[0] >= 5 * 6,
    f'sum({REQUESTS}{{path="{PRICES_ROUTE}",status_code="404"}})': lambda v: v[0] >= 5,
    f'sum({REQUESTS}{{path="/rankings",status_code="200"}})': lambda v: v[0] >= 5,
    f'sum({REQUESTS}{{path="/health"}})': lambda v: v[0] >= 5,
    f'sum(datatracker_api_request_duration_seconds_bucket{{path="{PRICES_ROUTE}",le="+Inf"}})': (
        lambda v: v[0] >= 5 * 7
    ),
    # Answers from memory (held windows) and from SQL (a pair's first request).
    'sum(datatracker_api_price_answers_total{source="memory"})': lambda v: v[0] > 0,
    'sum(datatracker_api_price_answers_total{source="sql"})': lambda v: v[0] > 0,
    # Windows held and their bytes, over both workers; both listening.
    "datatracker_api_price_windows": lambda v: 0 < v[0] <= 2 * 6,
    "datatracker_api_price_windows_bytes": lambda v: v[0] > 0,
    'datatracker_api_response_cache_state{state="listening"}': lambda v: v == [2],
    'datatracker_api_response_cache_state{state="not listening"}': lambda v: v == [0],
    "sum(datatracker_api_listener_connects_total)": lambda v: v[0] >= 2,
    'sum(datatracker_api_announcements_total{kind="ticks"})': lambda v: v[0] > 0,
    # The database's state, read by the API as the role api.
    "datatracker_api_database_up": lambda v: v == [1],
    # At 1 s cycles a tick may be filed up to an instant ahead (issue 20, item 6).
    "datatracker_newest_tick_age_seconds": lambda v: -2 < v[0] < 10,
    "time() - datatracker_newest_tick_timestamp_seconds": lambda v: -2 < v[0] < 10,
    # The collector.
    'datatracker_collector_cycles_total{outcome="written"}': lambda v: v[0] > 2,
    'datatracker_collector_cycles_total{outcome="lost"}': lambda v: v == [0],
    'datatracker_collector_cycles_total{outcome="set_aside"}': lambda v: v == [0],
    "datatracker_collector_fetch_seconds_count": lambda v: len(v) == 2 and min(v) > 2,
    "datatracker_collector_fetch_failures_total": lambda v: v == [0, 0],
    "datatracker_collector_write_seconds_count": lambda v: v[0] > 2,
    "datatracker_collector_ticks_written_total": lambda v: len(v) == 2 and min(v) >= 3 * 3,
    "datatracker_collector_ticks_dropped_total": lambda v: v == [0, 0],
    "datatracker_collector_spool_evicted_ticks_total": lambda v: v == [0],
    "datatracker_collector_spool_cycles": lambda v: 0 <= v[0] <= 2,
    "datatracker_collector_spool_ticks": lambda v: 0 <= v[0] <= 2 * 6,
    "datatracker_collector_spool_bytes": lambda v: v[0] >= 0,
    "datatracker_collector_set_aside_cycles": lambda v: v == [0],
    "datatracker_collector_held_cycles": lambda v: v == [0],
    "datatracker_collector_held_ticks": lambda v: v == [0],
    "datatracker_collector_database_up": lambda v: v == [1],
    "datatracker_collector_writer_lag_seconds": lambda v: 0 <= v[0] <= 2,
    # Instants up to one ahead at 1 s cycles, as above.
    "time() - datatracker_collector_newest_committed_timestamp_seconds": lambda v: -2 < v[0] < 5,
    "time() - datatracker_collector_newest_fetched_timestamp_seconds": lambda v: -2 < v[0] < 5,
}


@pytest.mark.parametrize("expr", SERIES)
def test_prometheus_scrapes_each_series(stack: Stack, expr: str) -> None:
    """Prometheus, scraping the running API and collector, has the series with a value in
    bounds for what the test did."""
    found = values(stack.prometheus, expr)

    assert found, f"no series: {expr}"
    assert SERIES[expr](sorted(found)), f"{expr}: {found}"


def test_request_series_are_labelled_by_route_template_never_the_raw_path(stack: Stack) -> None:
    """No request series names a pair: their path label is a route template (or a static
    path)."""
    paths = {sample["metric"]["path"] for sample in query(stack.prometheus, REQUESTS)}

    assert PRICES_ROUTE in paths
    assert [] == [path for path in paths if "kraken" in path or "coinbase" in path]


@pytest.mark.parametrize("panel", promql_queries(), ids=lambda q: q.id)
def test_every_service_dashboard_query_returns_series(
    stack: Stack, edition: StorageMode, panel: PromQuery
) -> None:
    """Each PromQL panel of the Service dashboard evaluates without error on the real
    Prometheus and returns series (the job-failure panel on the edition that has jobs; on the
    Apache edition it evaluates to nothing)."""
    found = query(stack.prometheus, panel.expand(RATE_INTERVAL))

    if JOB_SERIES in panel.expr and edition == "apache":
        assert [] == found
        return
    assert found, panel.expr


def test_the_api_exports_each_timescaledb_job_by_name(stack: Stack, edition: StorageMode) -> None:
    """Every policy job is exported with its failures in a row, labelled by its name (not
    `job`, Prometheus' own label); the Apache edition, which has no jobs, exports none."""
    names = {sample["metric"].get("job_name") for sample in query(stack.prometheus, JOB_SERIES)}

    if edition == "apache":
        assert set() == names
    else:
        assert set(POLICIES) <= names


async def test_metrics_off_serves_no_metrics(api_url: str) -> None:
    """With API_METRICS=false the API has no /metrics (404) and still answers."""
    settings = load_settings(_env_file=None, database_url=api_url, api_metrics=False)
    async with serve_api(settings) as client:
        assert 404 == (await client.get("/metrics")).status_code
        assert 200 == (await client.get("/health")).status_code


async def test_metrics_read_the_database_as_the_api_role(api_url: str, conn: Any) -> None:
    """In one process, /metrics gives the newest tick's age read as the role api, and counts
    the requests before it by route template."""
    await conn.execute(
        "INSERT INTO markets (exchange, symbol, base, quote, first_seen, last_seen)"
        " VALUES ('kraken', 'btcusd', 'BTC', 'USD', now(), now())"
    )
    await conn.execute(
        "INSERT INTO ticks (time, market_id, price)"
        " SELECT now() - interval '30 seconds', id, 1.0 FROM markets"
    )
    settings = load_settings(_env_file=None, database_url=api_url)
    async with serve_api(settings) as client:
        await client.get("/prices/kraken/btcusd")
        text = (await client.get("/metrics")).text

    families = {family.name: family for family in text_string_to_metric_families(text)}
    (age,) = families["datatracker_newest_tick_age_seconds"].samples
    assert 30 <= age.value < 40
    assert [1.0] == [s.value for s in families["datatracker_api_database_up"].samples]
    paths = {s.labels["path"] for s in families["datatracker_api_request_duration_seconds"].samples}
    assert PRICES_ROUTE in paths


async def test_a_collector_whose_metrics_port_is_taken_collects_all_the_same(
    collector_url: str, database_url: str, tmp_path: Path
) -> None:
    """A METRICS_PORT another process holds is logged once; cycles are written as usual."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with collectors(
            tmp_path,
            DATABASE_URL=collector_url,
            COLLECT_INTERVAL_SECONDS="1",
            SUPPORTED_EXCHANGES="kraken",
            SIMULATED_PAIRS_PER_EXCHANGE="2",
            GAP_FILL_MAX_HOURS="0",
            METRICS_PORT=str(port),
        ) as processes:
            process = processes.start()

            async def written() -> bool:
                return len(await stored_cycles(database_url)) >= 2

            await until(written, 20, "two cycles written")
            log = processes.stderr(process)

    assert 1 == log.count(f"metrics not served: cannot listen on 127.0.0.1:{port}")


def test_api_workers_empty_the_metrics_directory_they_are_given(
    api_url: str, tmp_path: Path
) -> None:
    """With two workers and PROMETHEUS_MULTIPROC_DIR set, values an earlier run left there are
    removed at start, and /metrics adds up both workers' values."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    stale = directory / "counter_1.db"
    stale.write_bytes(b"left by an earlier run")
    with api_process(
        api_url, tmp_path / "api.log", API_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(directory)
    ) as (port, _):
        for _ in range(20):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        files = sorted(path.name for path in directory.glob("*.db"))

    assert not stale.exists()
    assert files  # the workers' values
    families = {family.name: family for family in text_string_to_metric_families(text)}
    health = [
        s.value
        for s in families["datatracker_api_request_duration_seconds"].samples
        if s.name == "datatracker_api_request_duration_seconds_count"
        and s.labels["path"] == "/health"
    ]
    assert [20.0] == health  # every request, whichever worker answered it


def workers_of(pid: int) -> list[int]:
    """The uvicorn worker processes of `python -m api` (not multiprocessing's tracker)."""
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    return [
        child
        for child in children
        if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def counted_workers(port: int) -> float:
    """How many workers /metrics counts: each is in one response cache state."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return sum(s.value for s in families["datatracker_api_response_cache_state"].samples)


def test_a_killed_worker_s_gauges_are_not_summed_in_after_its_restart(
    api_url: str, tmp_path: Path
) -> None:
    """When a worker is SIGKILLed and uvicorn starts another, the gauges sum the two live
    workers, not the dead one's last values too (each worker counts 1 in one cache state)."""
    directory = tmp_path / "multiproc"
    with api_process(
        api_url, tmp_path / "api.log", API_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(directory)
    ) as (port, pid):
        deadline = time.monotonic() + 20
        while counted_workers(port) != 2:
            assert time.monotonic() < deadline, "two workers never counted"
            time.sleep(0.5)
        victim = workers_of(pid)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (len(workers := workers_of(pid)) == 2 and victim not in workers):
            assert time.monotonic() < deadline, "uvicorn did not replace the killed worker"
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while counted_workers(port) < 2:  # the new worker starts following
            assert time.monotonic() < deadline, "the new worker never counted"
            time.sleep(0.5)
        time.sleep(2 * FOLLOW_SECONDS)
        seen = {counted_workers(port) for _ in range(10)}

    assert {2.0} == seen
