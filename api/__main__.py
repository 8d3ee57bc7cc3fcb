"""`python -m api`: serve the API with uvicorn on API_HOST:API_PORT, in API_WORKERS processes
(0: one per core) sharing the socket, each with its own pool, listener and memory."""

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from api.parent import exit_with_parent
from api.server import (
    ListenAddressError,
    Protocol,
    allow_open_files,
    check_listen_address,
    server_options,
)
from datatracker.logs import configure_logging
from datatracker.settings import Settings, load_settings

log = logging.getLogger("api")

# prometheus-client's multiprocess mode (api/metrics.py). Read when the metrics are made, as
# api.metrics is imported: this module imports it only in app_from_environment, once the
# directory is ready.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def workers(settings: Settings) -> int:
    """How many API processes to run: API_WORKERS, or one per core when it is 0."""
    return settings.api_workers or os.cpu_count() or 1


def app_from_environment() -> object:
    """The app as each worker process builds it, from the environment's settings."""
    exit_with_parent()
    from api.app import create_app  # here: after metrics_directory (MULTIPROCESS_DIR)

    settings = load_settings()
    configure_logging(settings.log_level)
    Protocol.header_timeout = settings.api_header_timeout_seconds
    return create_app(settings)


@contextmanager
def metrics_directory(settings: Settings, count: int) -> Iterator[None]:
    """The directory of prometheus-client's multiprocess mode: the one PROMETHEUS_MULTIPROC_DIR
    names, made if missing and emptied first (values of an earlier run would be added to this
    one's); else, with metrics on and more than one worker, a fresh one removed at the end."""
    given = os.environ.get(MULTIPROCESS_DIR)
    if not given and (not settings.api_metrics or count == 1):
        yield
        return
    directory = Path(given) if given else Path(tempfile.mkdtemp(prefix="datatracker-api-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_DIR] = str(directory)  # read by the workers as they start
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        check_listen_address(settings.api_host, settings.api_port)
    except ListenAddressError as error:
        log.error("%s", error)
        sys.exit(1)
    max_connections = allow_open_files(settings.api_max_connections)
    count = workers(settings)
    options = server_options(settings, max_connections) | {"http": Protocol}
    log.info(
        "serving on %s:%d with %d worker processes", settings.api_host, settings.api_port, count
    )
    with metrics_directory(settings, count):
        uvicorn.run(
            "api.__main__:app_from_environment",
            factory=True,
            workers=count,
            host=settings.api_host,
            port=settings.api_port,
            proxy_headers=True,
            **options,
        )


if __name__ == "__main__":
    main()
