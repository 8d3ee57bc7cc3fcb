"""The API's Prometheus metrics (API_METRICS): `GET /metrics`.

Requests are counted and timed by `request_metrics`, a Litestar middleware, labelled by route
template (`/prices/{exchange}/{symbol}`, never the raw path) and status. The rest is ours:
answers from memory or SQL, the windows held, the listener's state, connections and
announcements (updated where they happen, or every FOLLOW_SECONDS), and what the database
says at each scrape (newest tick, read as the role api).

With API_WORKERS > 1, `python -m api` gives the workers a PROMETHEUS_MULTIPROC_DIR: each writes
its values there and the worker that answers a scrape adds them all up (prometheus-client's
multiprocess mode), the gauges summed over the live workers.
"""

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from litestar import Response, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.jobs import job_states
from datatracker.queries import load_queries

if TYPE_CHECKING:
    from api.cache import ResponseCache

QUERIES = load_queries(Path(__file__).with_name("metrics.sql"))
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# How often each worker copies its windows and listener state into the gauges.
FOLLOW_SECONDS = 1.0
# A scrape waits at most this long for a connection to read the database's state.
DATABASE_WAIT_SECONDS = 1.0
# A hot /prices answer takes ~0.1 ms: finer buckets than prometheus-client's default.
LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
CACHE_STATES = ("listening", "not listening", "off")

log = logging.getLogger("api")


REQUEST_SECONDS = Histogram(
    "datatracker_api_request_duration_seconds",
    "Time from a request's routing to its answer sent, by method, route template and status "
    "(its _count: the requests)",
    ["method", "path", "status_code"],
    buckets=LATENCY_BUCKETS,
)


# Each label set's histogram child, kept: looking it up by its labels costs more than the
# observation.
_REQUEST_SERIES: dict[tuple[str, str, int], Any] = {}


def observe_request(method: str, path_template: str, status: int, seconds: float) -> None:
    """Count and time one HTTP request by method, route template and status."""
    key = (method, path_template, status)
    series = _REQUEST_SERIES.get(key)
    if series is None:
        series = _REQUEST_SERIES[key] = REQUEST_SECONDS.labels(method, path_template, str(status))
    series.observe(seconds)


def request_metrics(app: ASGIApp) -> ASGIApp:
    """Litestar middleware: time each HTTP request into a histogram by method, route template
    and status (its `_count` counts them; 5xx is a status_code). A /prices answer sent from
    memory before routing (api/asgi.py) is timed there, under its route's template.

    Not Litestar's PrometheusMiddleware: it builds a Request and its URL, a label dict and a
    wrapped `send` per request, goes through AbstractMiddleware's bypass check, and updates a
    counter, a histogram and an in-progress gauge looked up by their labels: ~20 µs of CPU a
    request, against ~30 µs for a whole hot /prices answer in-process. This keeps each label
    set's histogram child: with the memory/SQL counter, ~5 µs (bench/RESULTS.md).
    """

    async def measured(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        status = 500  # a request that raises without answering

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = perf_counter()
        try:
            await app(scope, receive, status_send)
        finally:
            template = scope.get("path_template") or "unrouted"
            observe_request(scope["method"], template, status, perf_counter() - started)

    return measured


PRICE_ANSWERS = Counter(
    "datatracker_api_price_answers_total",
    "/prices answers by where the window came from: memory (held) or sql (read for the request)",
    ["source"],
)
FROM_MEMORY = PRICE_ANSWERS.labels("memory")
FROM_SQL = PRICE_ANSWERS.labels("sql")
ANNOUNCEMENTS = Counter(
    "datatracker_api_announcements_total",
    "Changes the database announced that the API applied, by kind (ticks, ranking, markets, "
    "storage)",
    ["kind"],
)
LISTENER_CONNECTS = Counter(
    "datatracker_api_listener_connects_total",
    "Times the listening connection connected: the first, then every reconnect",
)
WINDOWS = Gauge(
    "datatracker_api_price_windows",
    "Pairs' 24-hour windows held in memory, over every worker",
    multiprocess_mode="livesum",
)
WINDOWS_BYTES = Gauge(
    "datatracker_api_price_windows_bytes",
    "Bytes the held windows and their answers count against API_WINDOWS_MB, over every worker",
    multiprocess_mode="livesum",
)
CACHE_STATE = Gauge(
    "datatracker_api_response_cache_state",
    "Workers whose response cache is in this state (listening, not listening, off)",
    ["state"],
    multiprocess_mode="livesum",
)


def announced(source: str) -> None:
    """Count an announcement the listener applied, by its source as api/announcements.py read
    it (a bounded set: a hostile payload counts as `unknown`, never as a label of its own)."""
    ANNOUNCEMENTS.labels(source).inc()


def forget_dead_workers() -> None:
    """In multiprocess mode, drop the live gauges of workers that are gone (uvicorn restarts a
    worker that dies): their last values would be summed in forever."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory is None:
        return
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        try:
            os.kill(pid, 0)  # signal 0: only whether the process exists
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # it exists, as another user's


async def follow(cache: "ResponseCache") -> None:
    """Copy this worker's windows and listener state into the gauges, until cancelled."""
    forget_dead_workers()
    while True:
        WINDOWS.set(len(cache.windows))
        WINDOWS_BYTES.set(cache.windows.held_bytes)
        status = cache.status
        for state in CACHE_STATES:
            CACHE_STATE.labels(state).set(1 if state == status else 0)
        await asyncio.sleep(FOLLOW_SECONDS)


class Families(Collector):
    """Metric families read at scrape time, for `generate_latest`."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


async def newest_tick(conn: AsyncConnection) -> list[Metric]:
    """The newest tick's instant and age, when there is one."""
    cursor = await conn.execute(QUERIES["newest_tick"])
    timestamp, age = await cursor.fetchone() or (None, None)
    if timestamp is None or age is None:
        return []
    return [
        GaugeMetricFamily(
            "datatracker_newest_tick_timestamp_seconds", "Instant of the newest tick", timestamp
        ),
        GaugeMetricFamily(
            "datatracker_newest_tick_age_seconds",
            "Age of the newest tick by the database's clock",
            age,
        ),
    ]


async def timescaledb_jobs(conn: AsyncConnection) -> list[Metric]:
    """Each TimescaleDB job of the project (api/jobs.py), labelled `job_name` (Prometheus
    keeps `job` for its scrape job): whether its last background run succeeded, its failures
    in a row, and its last success. None on the Apache edition, which has no jobs."""
    labels = ["job_name"]
    success = GaugeMetricFamily(
        "datatracker_timescaledb_job_last_run_success",
        "1 when the job's last background run succeeded, 0 when it failed (absent: never run)",
        labels=labels,
    )
    failures = GaugeMetricFamily(
        "datatracker_timescaledb_job_consecutive_failures",
        "Background runs of the job that failed in a row",
        labels=labels,
    )
    last_success = GaugeMetricFamily(
        "datatracker_timescaledb_job_last_success_timestamp_seconds",
        "When the job last succeeded in the background (absent: never)",
        labels=labels,
    )
    jobs = await job_states(conn)
    if not jobs:
        return []
    for job in jobs:
        if job.last_run_success is not None:
            success.add_metric([job.name], 1 if job.last_run_success else 0)
        failures.add_metric([job.name], job.consecutive_failures)
        if job.last_success_timestamp_seconds is not None:
            last_success.add_metric([job.name], job.last_success_timestamp_seconds)
    return [success, failures, last_success]


# What a scrape reads of the database, each with one statement on one connection.
DATABASE_READERS: tuple[Callable[[AsyncConnection], Awaitable[list[Metric]]], ...] = (
    newest_tick,
    timescaledb_jobs,
)


async def database_metrics(pool: AsyncConnectionPool) -> list[Metric]:
    """The database's state, and `datatracker_api_database_up`: 0, and nothing else, when no
    connection answered within DATABASE_WAIT_SECONDS."""
    families: list[Metric] = []
    try:
        async with pool.connection(timeout=DATABASE_WAIT_SECONDS) as conn:
            for read in DATABASE_READERS:
                families += await read(conn)
        up = 1
    except Exception as error:  # a scrape answers whatever the database does
        log.debug("metrics: database state not read (%s)", error)
        families, up = [], 0
    help_text = "1 when a scrape read the database's state as the role api"
    return [*families, GaugeMetricFamily("datatracker_api_database_up", help_text, up)]


def process_registry() -> Collector:
    """This process's metrics, or every worker's in multiprocess mode."""
    if MULTIPROCESS_DIR not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


@get("/metrics", include_in_schema=False)
async def metrics(state: State) -> Response[bytes]:
    """Prometheus' text format: the workers' metrics, then the database's state."""
    database = Families(await database_metrics(state.pool))
    body = generate_latest(process_registry()) + generate_latest(database)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
