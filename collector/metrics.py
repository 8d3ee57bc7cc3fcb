"""The collector's Prometheus metrics, served on METRICS_HOST:METRICS_PORT (0: not served).

Counters and histograms are updated where things happen (a fetch, a write, a cycle's end);
what the spool and the writer hold now is read when Prometheus scrapes (`CollectorState`).
Names follow Prometheus' conventions: a `datatracker_collector_` prefix, base units
(seconds, bytes), `_total` for counters, `_timestamp_seconds` for instants.
"""

import logging
from collections.abc import Iterator
from threading import Thread
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from collector.report import CycleReport

if TYPE_CHECKING:
    from collector.backlog import Backlog
    from collector.spool import Spool

log = logging.getLogger("collector")

# How a cycle ended: written (committed), set_aside (refused by the database, kept aside),
# evicted (dropped from a full spool), lost (fetched but not kept in the spool), abandoned
# (its fetch cut short by a stop).
OUTCOMES = ("written", "set_aside", "evicted", "lost", "abandoned")
CYCLES = Counter("datatracker_collector_cycles_total", "Cycles, by how they ended", ["outcome"])
FETCH_SECONDS = Histogram(
    "datatracker_collector_fetch_seconds",
    "Time one exchange's fetch of a cycle took, retries included",
    ["exchange"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
)
FETCH_FAILURES = Counter(
    "datatracker_collector_fetch_failures_total",
    "Cycles in which an exchange's fetch failed",
    ["exchange"],
)
# A cycle is one transaction for every exchange: its write time is the cycle's.
WRITE_SECONDS = Histogram(
    "datatracker_collector_write_seconds",
    "Time one cycle's transaction took (markets, ticks and run records, every exchange)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TICKS_WRITTEN = Counter(
    "datatracker_collector_ticks_written_total", "Ticks committed, per exchange", ["exchange"]
)
TICKS_DROPPED = Counter(
    "datatracker_collector_ticks_dropped_total",
    "Quotes dropped as invalid (zero, negative, not a number, repeated), per exchange",
    ["exchange"],
)
TICKS_EVICTED = Counter(
    "datatracker_collector_spool_evicted_ticks_total",
    "Ticks of cycles dropped from a full spool before they were written",
)
for outcome in OUTCOMES:
    CYCLES.labels(outcome)  # every outcome shows, at 0 until it happens


class Instants:
    """The newest cycle instant fetched and the newest committed, as Unix seconds."""

    fetched: float | None = None
    committed: float | None = None


INSTANTS = Instants()


def fetched(report: CycleReport) -> None:
    """A cycle was fetched: each exchange's fetch time, failures and dropped quotes."""
    for outcome in report.outcomes:
        # inc(0) too: each exchange's series shows from its first cycle, at 0.
        FETCH_SECONDS.labels(outcome.exchange).observe(outcome.fetch_seconds)
        FETCH_FAILURES.labels(outcome.exchange).inc(1 if outcome.error else 0)
        TICKS_DROPPED.labels(outcome.exchange).inc(outcome.dropped)
    INSTANTS.fetched = max(INSTANTS.fetched or 0.0, report.at.timestamp())


def written(report: CycleReport) -> None:
    """A cycle's transaction committed."""
    CYCLES.labels("written").inc()
    WRITE_SECONDS.observe(report.write_seconds)
    for outcome in report.outcomes:
        TICKS_WRITTEN.labels(outcome.exchange).inc(outcome.written)
    INSTANTS.committed = max(INSTANTS.committed or 0.0, report.at.timestamp())


def ended(outcome: str) -> None:
    """A cycle ended otherwise than written: set_aside, lost or abandoned."""
    CYCLES.labels(outcome).inc()


def evicted(cycles: int, ticks: int) -> None:
    """Cycles were dropped from a full spool (or from memory, when the spool failed)."""
    if cycles:
        CYCLES.labels("evicted").inc(cycles)
        TICKS_EVICTED.inc(ticks)


class CollectorState(Collector):
    """What the spool and the writer hold, read at each scrape."""

    def __init__(self, spool: "Spool", backlog: "Backlog", interval_seconds: int) -> None:
        self._spool = spool
        self._backlog = backlog
        self._interval = interval_seconds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting, ticks = self._spool.waiting()
        yield GaugeMetricFamily(
            "datatracker_collector_spool_cycles", "Cycles waiting in the spool", waiting
        )
        yield GaugeMetricFamily(
            "datatracker_collector_spool_ticks", "Ticks of the cycles waiting in the spool", ticks
        )
        yield GaugeMetricFamily(
            "datatracker_collector_spool_bytes",
            "Encoded bytes the spool holds, waiting and set aside (what SPOOL_MAX_MB bounds)",
            self._spool.bytes,
        )
        held, held_ticks = self._backlog.held()
        yield GaugeMetricFamily(
            "datatracker_collector_held_cycles",
            "Cycles the spool could not take (its disk full or failing), held in memory until"
            " the database takes them",
            held,
        )
        yield GaugeMetricFamily(
            "datatracker_collector_held_ticks", "Ticks of the cycles held in memory", held_ticks
        )
        yield GaugeMetricFamily(
            "datatracker_collector_set_aside_cycles",
            "Cycles the database refused, kept aside in the spool",
            self._spool.set_aside_count(),
        )
        yield GaugeMetricFamily(
            "datatracker_collector_database_up",
            "1 unless the writer's last attempt found the database unreachable",
            0 if self._backlog.unreachable else 1,
        )
        yield GaugeMetricFamily(
            "datatracker_collector_writer_lag_seconds",
            "How far the newest committed cycle is behind the newest fetched (0: caught up)",
            self._lag(waiting + held),
        )
        for name, help_text, value in (
            ("fetched", "Instant of the newest cycle fetched", INSTANTS.fetched),
            ("committed", "Instant of the newest cycle committed", INSTANTS.committed),
        ):
            if value is not None:
                yield GaugeMetricFamily(
                    f"datatracker_collector_newest_{name}_timestamp_seconds", help_text, value
                )

    def _lag(self, waiting: int) -> float:
        """0 with nothing waiting (in the spool or held in memory); else the newest fetched
        instant less the newest committed, or, before this process committed any, the waiting
        cycles' intervals."""
        if not waiting:
            return 0.0
        if INSTANTS.fetched is not None and INSTANTS.committed is not None:
            return max(0.0, INSTANTS.fetched - INSTANTS.committed)
        return float(waiting * self._interval)


class MetricsServer:
    """The HTTP endpoint Prometheus scrapes, in a thread of its own."""

    def __init__(self, state: CollectorState) -> None:
        self._state = state
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

    def start(self, host: str, port: int) -> None:
        """Serve on host:port (port 0: not at all); a port that cannot be bound is logged once,
        and the collector collects without metrics."""
        if not port:
            return
        REGISTRY.register(self._state)
        try:
            self._server, self._thread = start_http_server(port, addr=host)
        except OSError as error:
            REGISTRY.unregister(self._state)
            log.error("metrics not served: cannot listen on %s:%d (%s)", host, port, error.strerror)
            return
        log.info("metrics on http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        REGISTRY.unregister(self._state)
        self._server = self._thread = None
