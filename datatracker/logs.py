"""Log format for both services: one readable line per event, times in UTC."""

import logging
import time

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
    pool_log = logging.getLogger("psycopg.pool")
    if not_a_pool_connection_warning not in pool_log.filters:
        pool_log.addFilter(not_a_pool_connection_warning)
