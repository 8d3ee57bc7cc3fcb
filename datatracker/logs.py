"""Log format for both services: one readable line per event, times in UTC."""

import logging
import time

import psycopg

# psycopg_pool's warnings that a connection failed or broke: two lines each (libpq's hint "Is
# the server running…" included), one per attempt, dozens an outage. Each service says once
# that the database went and once that it is back (datatracker.circuit); these say no more.
POOL_CONNECTION_WARNINGS = frozenset(
    {
        "error connecting in %r: %s",
        "reconnection attempt in pool %r failed after %s sec",
        "discarding broken connection: %s",
        "discarding closed connection: %s",
    }
)


def not_a_pool_connection_warning(record: logging.LogRecord) -> bool:
    """False for psycopg_pool's connection-failure warnings (the filter of its logger)."""
    return record.msg not in POOL_CONNECTION_WARNINGS


def not_an_unreachable_cancel_warning(record: logging.LogRecord) -> bool:
    """False for psycopg's warnings that a query cut short (its task cancelled, as a timeout
    or a stopped load does) could not be cancelled on a server that cannot be reached: during
    an outage libpq's two-line "connection refused … Is the server running" and "query
    cancellation interrupted (OperationalError)" say again what the service's one line said."""
    if record.msg == "query cancellation failed: %s":
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args and isinstance(args[0], psycopg.OperationalError))
    if record.msg == "query cancellation interrupted (%s): closing connection":
        return record.args != ("OperationalError",)
    return True


def configure_logging(level: str) -> None:
    """Log to stderr as `2026-01-31T12:00:00Z INFO collector: message`."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Their per-run chatter would drown the one line per exchange per cycle.
    for noisy in ("apscheduler", "psycopg.pool", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_outage_warnings()


def quiet_outage_warnings() -> None:
    """Filter psycopg's and psycopg_pool's repeats of an outage out of their loggers."""
    for name, quiet in (
        ("psycopg.pool", not_a_pool_connection_warning),
        ("psycopg", not_an_unreachable_cancel_warning),
    ):
        if quiet not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(quiet)
