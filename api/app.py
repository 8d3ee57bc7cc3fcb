"""`create_app(settings)`: the Litestar application and its resources."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import psycopg
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ControllerRouterHandler, Scope
from psycopg_pool import PoolTimeout

from api import metrics
from api.asgi import Api
from api.cache import ResponseCache
from api.candles import candles
from api.docs import assets_router, openapi_config
from api.errors import bad_request
from api.prebuild import Prebuilder
from api.rankings import rankings
from api.replica import Replica, ReplicaBehind
from api.routes import health, price_history, provide_connection
from api.windows import PriceWindows
from datatracker.database import create_pool, redact_dsn
from datatracker.settings import Settings

log = logging.getLogger("api")

# A request waits this long for a connection before answering 503.
CONNECTION_WAIT_SECONDS = 5.0
# Every route is a GET: Api (api/asgi.py) refuses any request body before routing; this
# bounds what a handler could read, should one ever read it.
MAX_BODY_BYTES = 1024


def database_unavailable(
    request: Request[Any, Any, State], error: Exception
) -> Response[dict[str, object]]:
    """The database is down or overloaded: say so as JSON, with 503."""
    return Response(
        {"status_code": 503, "detail": "database unavailable, try again shortly"},
        status_code=503,
    )


async def log_server_error(error: Exception, scope: Scope) -> None:
    """Log, once and with its traceback, an exception that becomes a 500 (not a 4xx, and not
    the 503 of an unreachable database)."""
    if isinstance(error, HTTPException) and error.status_code < 500:
        return
    if isinstance(error, psycopg.OperationalError):  # PoolTimeout too: answered 503
        return
    if isinstance(error, ReplicaBehind):  # answered 503; the listener says so once
        return
    log.error("%s %s failed", scope.get("method", ""), scope.get("path", ""), exc_info=error)


def replica_behind(
    request: Request[Any, Any, State], error: Exception
) -> Response[dict[str, object]]:
    """The standby did not replay the primary's last changes in time: 503, ask again in a
    second (an answer read now could miss a change already announced)."""
    return Response(
        {"status_code": 503, "detail": f"{error}; try again shortly"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def database_went_down(reason: str) -> None:
    """The one line of an outage's start: from now on requests get 503 at once."""
    log.error("database unreachable (%s): answering 503 until it is back", redact_dsn(reason))


def database_came_back(seconds: float) -> None:
    """The one line of an outage's end."""
    log.warning("database reachable again after %.0f s: serving", seconds)


def create_app(settings: Settings) -> Litestar:
    """The API app; its connection pool opens and closes with the app's lifespan."""
    pool = create_pool(
        settings.database_url,
        max_size=settings.db_pool_max_size,
        name="api",
        timeout=CONNECTION_WAIT_SECONDS,
        on_down=database_went_down,
        on_up=database_came_back,
    )

    windows = PriceWindows(max_bytes=int(settings.api_windows_mb * 2**20))
    listen_url = settings.api_listen_url or settings.database_url
    replica = None
    if listen_url != settings.database_url:
        replica = Replica(settings.database_url, listen_url, settings.api_replica_wait_seconds)
    prebuilder = Prebuilder(windows) if settings.api_prebuild and windows.enabled else None
    cache = ResponseCache(settings.api_cache_mb * 2**20, windows, replica, prebuilder)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Not waiting for the database: the API starts and answers 503 until it is back.
        await pool.open(wait=False)
        app.state.pool = pool
        app.state.cache = cache
        app.state.settings = settings  # /health judges freshness by the collect interval
        tasks = [asyncio.create_task(cache.listen(listen_url))]
        if settings.api_metrics:
            tasks.append(asyncio.create_task(metrics.follow(cache)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            await pool.close()
            if prebuilder is not None:
                prebuilder.close()
            if replica is not None:
                await replica.close()

    handlers: list[ControllerRouterHandler] = [
        price_history,
        candles,
        rankings,
        health,
        assets_router(),
    ]
    return Api(
        route_handlers=[*handlers, metrics.metrics] if settings.api_metrics else handlers,
        middleware=[metrics.request_metrics] if settings.api_metrics else [],
        dependencies={"conn": Provide(provide_connection)},
        lifespan=[lifespan],
        exception_handlers={
            psycopg.OperationalError: database_unavailable,
            PoolTimeout: database_unavailable,
            ReplicaBehind: replica_behind,
            ValidationException: bad_request,
        },
        openapi_config=openapi_config(version="0.1.0"),
        logging_config=None,  # datatracker.logs configures logging for the whole process
        # With no logging config Litestar logs no exception: log each 500's traceback here.
        after_exception=[log_server_error],
        request_max_body_size=MAX_BODY_BYTES,
    )
