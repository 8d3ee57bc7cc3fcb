"""Route handlers: validate, run a named query, shape the response."""

import re
from array import array
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, NoReturn

from litestar import MediaType, Response, get
from litestar._asgi.utils import is_valid_host  # the Host check of Litestar's router
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter
from litestar.types import ASGIApp, HTTPScope, Scope
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api import metrics
from api.cache import ResponseCache, now_micros
from api.docs import NOT_FOUND_EXAMPLE, PRICE_HISTORY_EXAMPLE, documented
from api.errors import clip, shorten
from api.jobs import JobState, job_states
from api.models import Health, JobHealth, PriceHistory, Problem
from api.price_body import US_PER_SECOND, gunzip
from api.raw_response import RawResponse
from api.replica import lag_seconds as replica_lag_seconds
from api.windows import DAY_US, Place, Window
from api.windows import QUERIES as WINDOW_QUERIES
from datatracker.instants import instant
from datatracker.queries import load_queries
from datatracker.settings import Settings
from datatracker.storage import detect_storage_mode
from datatracker.symbols import normalise_exchange, normalise_symbol_query

QUERIES = load_queries(Path(__file__).with_name("queries.sql"))
VARY_ACCEPT_ENCODING = (b"vary", b"Accept-Encoding")
GZIP_CODED = (b"content-encoding", b"gzip")
# max-age of an answer still waiting for the current instant's cycle: the least a cache such
# as nginx keeps (0 is not kept at all); README, "Behind a reverse proxy".
UNSETTLED_MAX_AGE = 1

# Documents the 404 of a route that looks a pair up with find_market.
NOT_FOUND = {404: documented(Problem, "Unknown exchange or pair", NOT_FOUND_EXAMPLE)}

# A pooled connection, injected by name (see create_app's dependencies).
Connection = NamedDependency[AsyncConnection]

# `(?!\n)`: in Python's regex (which checks the value) `$` also matches before a trailing
# newline; the lookahead refuses it and means the same in the schema's ECMAScript dialect.
# `(?=.*[A-Za-z0-9])`: `---` names no exchange.
EXCHANGE_PATTERN = r"^(?=.*[A-Za-z0-9])[A-Za-z0-9_-]{1,40}(?!\n)$"
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?!\n)$"
# The patterns as Litestar checks them (msgspec: re.search).
EXCHANGE_RE, SYMBOL_RE = re.compile(EXCHANGE_PATTERN), re.compile(SYMBOL_PATTERN)
# Set in a /prices request's scope once `answer_held` found its window not held.
MEMORY_TRIED = "datatracker.memory_tried"
PRICES_ROUTE = "/prices/{exchange}/{symbol}"  # the route's template, as metrics label it
ExchangeParam = Annotated[
    str,
    Parameter(
        description="Exchange id, any case; `-` and `_` are ignored (`binance-us` = `binanceus`).",
        pattern=EXCHANGE_PATTERN,
        examples=[Example(value="kraken")],
    ),
]
SymbolParam = Annotated[
    str,
    Parameter(
        description="Pair as base and quote, any case, optionally joined by `-`, `_` or `.`: "
        "`btcusd`, `BTC-USD` and `btc_usd` are the same pair.",
        pattern=SYMBOL_PATTERN,
        examples=[Example(value="btcusd")],
    ),
]


async def provide_connection(state: State) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for one request, returned to the pool afterwards."""
    async with state.pool.connection() as conn:
        yield conn


def exchange_named(name: str) -> str:
    """The exchange id a user's name stands for; 400 when it names none (`---`)."""
    exchange = normalise_exchange(name)
    if not exchange:
        raise ValidationException(f"exchange names no exchange: {clip(name)}")
    return exchange


async def find_market(conn: AsyncConnection, exchange: str, symbol: str) -> tuple[int, str, str]:
    """The (id, exchange, symbol) of a pair as a user names it; 404 naming what is unknown."""
    exchange, symbol = exchange_named(exchange), normalise_symbol_query(symbol)
    cursor = await conn.execute(QUERIES["market"], {"exchange": exchange, "symbol": symbol})
    market = await cursor.fetchone()
    if market is None:
        await explain_unknown_market(conn, exchange, symbol)
    market_id, exchange, symbol = market
    return market_id, exchange, symbol


async def explain_unknown_market(conn: AsyncConnection, exchange: str, symbol: str) -> NoReturn:
    """404 for a pair not stored, naming whether the exchange is unknown or only the pair."""
    await require_exchange(conn, exchange)
    raise NotFoundException(f"unknown pair {symbol!r} on exchange {exchange!r}")


async def require_exchange(conn: AsyncConnection, exchange: str) -> None:
    """404 unless a market of `exchange` is stored."""
    cursor = await conn.execute(QUERIES["exchange_known"], {"exchange": exchange})
    known = await cursor.fetchone()
    if not (known and known[0]):
        raise NotFoundException(f"unknown exchange {exchange!r}")


@get(
    "/prices/{exchange:str}/{symbol:str}",  # PRICES_ROUTE
    summary="A pair's last 24 hours of prices",
    media_type=MediaType.JSON,
    responses={
        200: documented(PriceHistory, "Request fulfilled", PRICE_HISTORY_EXAMPLE),
        304: ResponseSpec(None, description="Not modified: the If-None-Match ETag is current"),
    }
    | NOT_FOUND,
)
async def price_history(
    scope: Scope, state: State, exchange: ExchangeParam, symbol: SymbolParam
) -> ASGIApp:
    """Prices of the last 24 hours, oldest first, with their sample standard deviation (`stdv`)
    and the pair's place in the volatility ranking (`rank` of `ranked`).

    Each answer carries an `ETag` (a `304` answers an `If-None-Match` that names it),
    `Last-Modified` (its newest price's time) and `Cache-Control: max-age`: once the current
    collection cycle is in the answer and in the ranking, up to the next one (or sooner if a
    price leaves the 24-hour window before then); until it is, 1 second."""
    exchange, symbol = exchange_named(exchange), normalise_symbol_query(symbol)
    cache: ResponseCache = state.cache
    if not scope.get(MEMORY_TRIED):
        answer = await answer_from_memory(scope, cache, state.settings, exchange, symbol)
        if answer is not None:
            metrics.FROM_MEMORY.inc()
            return answer
    now = now_micros()
    window, place = await read_window(state.pool, cache, exchange, symbol, now)
    metrics.FROM_SQL.inc()
    lo, hi = window.span(now)
    if lo == hi:
        raise NotFoundException(f"no price of {symbol!r} on {exchange!r} in the last 24 hours")
    return respond(scope, cache, state.settings, window, place, lo, hi, now)


def prices_names(scope: HTTPScope) -> tuple[str, str] | None:
    """The exchange and symbol of a GET the /prices route would take with valid parameters,
    named as the route names them (`/prices/{exchange}/{symbol}`, no root path, a valid Host);
    None for any other request, and for the forms of the same path Litestar normalises."""
    if scope["method"] != "GET" or scope.get("root_path"):
        return None
    parts = scope["path"].split("/")
    if len(parts) != 4 or parts[0] or parts[1] != "prices":
        return None
    exchange, symbol = parts[2], parts[3]
    if EXCHANGE_RE.search(exchange) is None or SYMBOL_RE.search(symbol) is None:
        return None
    for name, value in scope["headers"]:
        if name == b"host":
            return (exchange, symbol) if is_valid_host(value) else None
    return exchange, symbol


async def answer_held(scope: HTTPScope, state: State) -> RawResponse | None:
    """The answer to a /prices request (`prices_names`) from its pair's window held in memory,
    without Litestar's routing, parameters and dependencies (~45 µs of CPU a request:
    bench/RESULTS.md); None when the request is not such a request, or the window is not held
    and current (Litestar then routes it, MEMORY_TRIED set so that it reads the window from SQL
    without waiting for another sync round)."""
    names = prices_names(scope)
    if names is None:
        return None
    exchange, symbol = exchange_named(names[0]), normalise_symbol_query(names[1])
    answer = await answer_from_memory(scope, state.cache, state.settings, exchange, symbol)
    if answer is None:
        scope[MEMORY_TRIED] = True  # type: ignore[literal-required]
    else:
        metrics.FROM_MEMORY.inc()
    return answer


async def answer_from_memory(
    scope: Scope, cache: ResponseCache, settings: Settings, exchange: str, symbol: str
) -> RawResponse | None:
    """The answer from the pair's window held in memory, once a sync round of the listener has
    brought in every commit visible when the request came; None when the window is not held
    (or holds no price of the last 24 hours)."""
    now = now_micros()
    window, place = await hot_window(cache, exchange, symbol)
    if window is None or place is None:
        return None
    lo, hi = window.span(now)
    if lo == hi:
        return None
    return respond(scope, cache, settings, window, place, lo, hi, now)


def respond(
    scope: Scope,
    cache: ResponseCache,
    settings: Settings,
    window: Window,
    place: Place,
    lo: int,
    hi: int,
    now: int,
) -> RawResponse:
    """The answer to a request for the window's prices `lo:hi`: 200, gzip-coded if the request
    accepts it, or 304 if its If-None-Match names the answer's tag."""
    answer = cache.windows.answer(window, lo, hi, place)
    accept_encoding, if_none_match = conditions(scope)
    gzipped = accepts_gzip(accept_encoding)
    max_age = fresh_seconds(window, lo, hi, now, settings, place.as_of)
    headers = [
        (b"etag", answer.gzip_etag if gzipped else answer.etag),
        (b"last-modified", answer.last_modified),
        (b"cache-control", b"max-age=%d" % max_age),
        VARY_ACCEPT_ENCODING,
    ]
    if if_none_match and names_tag(if_none_match, answer.tags):
        return RawResponse(304, headers)
    if gzipped:
        headers.append(GZIP_CODED)
        return RawResponse(200, headers, answer.gzipped)
    return RawResponse(200, headers, gunzip(answer.gzipped))


async def hot_window(
    cache: ResponseCache, exchange: str, symbol: str
) -> tuple[Window | None, Place | None]:
    """The pair's window and place kept in memory, once every commit visible when the request
    came is in them (a sync round of the listener), and once a bulk load under way has read
    it (api/load_pages.py); (None, None) when not kept, or (None, place) when only its place
    is."""
    windows = cache.windows
    if not cache.windows_trusted():
        return None, None
    # Asked for before the sync round, a window not held yet is read during it: at 10k pairs
    # under wrk, p99 12.5-13.6 ms against 14.7-16.2 ms asked after, in the 20 s after start.
    windows.ask(exchange, symbol)
    if not (await cache.synced() and windows.serving):
        return None, None
    market_id = windows.market_id(exchange, symbol)
    if market_id is None:
        return None, None
    window = windows.window(market_id) or await windows.held_soon(market_id)
    return window, windows.place(market_id)


async def read_window(
    pool: AsyncConnectionPool, cache: ResponseCache, exchange: str, symbol: str, now: int
) -> tuple[Window, Place]:
    """The pair's window and place read from SQL; the window is kept if it fits. 404 when the
    pair is unknown."""
    windows = cache.windows
    version, trusted = windows.version, cache.windows_trusted()
    await cache.caught_up()
    params = {"exchange": exchange, "symbol": symbol, "since": instant(now - DAY_US)}
    async with pool.connection() as conn:
        cursor = await conn.execute(WINDOW_QUERIES["price_window"], params, binary=True)
        row = await cursor.fetchone()
        if row is None:
            await explain_unknown_market(conn, exchange, symbol)
        market_id, exchange, symbol, times, prices = row
        if trusted:
            place = windows.place(market_id)
        else:
            cursor = await conn.execute(QUERIES["market_rank"], {"market_id": market_id})
            place = Place(*(await cursor.fetchone() or (None, 0, None)))
    window = Window(market_id, exchange, symbol, array("q", times), array("d", prices))
    if trusted:
        windows.admit(window, version)
    return window, place


def fresh_seconds(
    window: Window, lo: int, hi: int, now: int, settings: Settings, ranked_as_of: int | None
) -> int:
    """Whole seconds the answer stays right: once the cycle of the current instant is in it
    and in the stored ranking (`ranked_as_of`, its end, µs), until the next cycle's instant,
    the oldest price leaving the window or a price stamped ahead of now entering it; before
    that (the cycle is being fetched or written, missed this pair, or is not ranked yet: the
    collector refreshes the ranking after the ticks commit) UNSETTLED_MAX_AGE, so a cache
    asks again soon and shows the cycle and its rank once committed."""
    interval = settings.collect_interval_seconds * US_PER_SECOND
    current = now - now % interval
    if window.times[hi - 1] < current or ranked_as_of is None or ranked_as_of < current:
        return UNSETTLED_MAX_AGE
    until = min(current + interval, window.times[lo] + DAY_US)
    if hi < len(window.times):
        until = min(until, window.times[hi])
    return max(0, int(until - now) // US_PER_SECOND)


def conditions(scope: Scope) -> tuple[str | None, str | None]:
    """A request's Accept-Encoding and If-None-Match (the first of each, None if absent),
    read from its raw headers: a hot answer's request builds no Request object."""
    accept_encoding = if_none_match = None
    for name, value in scope["headers"]:
        if name == b"accept-encoding" and accept_encoding is None:
            accept_encoding = value.decode("latin-1")
        elif name == b"if-none-match" and if_none_match is None:
            if_none_match = value.decode("latin-1")
    return accept_encoding, if_none_match


def names_tag(if_none_match: str | None, current: tuple[str, ...]) -> bool:
    """Whether an If-None-Match header names one of the `current` tags (or `*`), by weak
    comparison."""
    if not if_none_match:
        return False
    tags = (tag.strip() for tag in if_none_match.split(","))
    return any(tag == "*" or tag.removeprefix("W/") in current for tag in tags)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header accepts gzip (listed, and not with q=0)."""
    for coding in (accept_encoding or "").split(","):
        name, _, params = coding.partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


@get(
    "/health",
    summary="Database reachability and freshness of the data",
    responses={
        503: ResponseSpec(Health, description="Stale data, cycles set aside or a job failing")
    },
)
async def health(conn: Connection, state: State) -> Response[Health]:
    """`ok` with the newest tick's time and age, the storage mode, whether responses are
    cached, and TimescaleDB's jobs whose last run failed or that have not succeeded within
    twice their schedule (`jobs`; none on the Apache edition); 503 with a reason when the
    newest tick is older than two collect intervals, the collector set cycles aside or a job
    failed `HEALTH_JOB_FAILURES` times in a row (and, by the app's handler, when the DB is
    down). A tick more than one collect interval ahead of now does not count as fresh."""
    ahead = state.settings.collect_interval_seconds
    cursor = await conn.execute(QUERIES["health"], {"ahead": ahead})
    newest, age, set_aside = await cursor.fetchone() or (None, None, 0)
    mode = await detect_storage_mode(conn)
    jobs = [job for job in await job_states(conn) if job.needs_attention]
    compression = "available" if mode == "timescale" else "unavailable"
    reasons = []
    if set_aside:
        reasons.append(f"{set_aside} cycles set aside by the collector (set_aside_cycles)")
    stale_after = 2 * state.settings.collect_interval_seconds
    if age is not None and age > stale_after:
        reasons.append(f"the newest tick is {age:.0f} s old, more than {stale_after} s")
    reasons += job_failures(jobs, state.settings.health_job_failures)
    lag = await replica_lag_seconds(conn) if state.cache.replica else None
    reason = "; ".join(reasons) or None
    body = Health(
        "failing" if reason else "ok",
        "reachable",
        newest,
        age,
        mode,
        compression,
        state.cache.status,
        set_aside,
        len(state.cache.windows),
        round(state.cache.windows.held_bytes / 2**20, 3),
        state.cache.windows.loads,
        reason,
        jobs=[job_health(job) for job in jobs],
        replica_lag_seconds=lag,
    )
    return Response(body, status_code=503 if reason else 200)


def job_failures(jobs: list[JobState], limit: int) -> list[str]:
    """A reason for each scheduled job that failed `limit` times in a row or more; a paused
    job is reported in `jobs` but never makes /health fail."""
    return [
        f"TimescaleDB job {job.name}: {job.consecutive_failures} failures in a row, the last: "
        f"{shorten(job.error or 'no error recorded')}"
        for job in jobs
        if job.scheduled and job.consecutive_failures >= limit
    ]


def job_health(job: JobState) -> JobHealth:
    """What /health says of a job that needs attention."""
    return JobHealth(
        job.name,
        job.job_id,
        job.schedule_seconds,
        job.scheduled,
        job.last_run_started_at,
        job.last_run_status,
        job.last_success,
        job.consecutive_failures,
        job.error,
        job.overdue,
    )
