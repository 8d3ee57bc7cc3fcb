"""Log format for both services: one readable line per event, times in UTC."""

import logging
import time


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
