"""Route handlers: validate, run a named query, shape the response."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, NoReturn

from litestar import MediaType, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.serialization import encode_json
from psycopg import AsyncConnection

from api.cache import ResponseCache
from api.models import Health, Price, PriceHistory, Problem
from datatracker.queries import load_queries
from datatracker.storage import detect_storage_mode
from datatracker.symbols import normalise_exchange, normalise_symbol_query

QUERIES = load_queries(Path(__file__).with_name("queries.sql"))

# Documents the 404 of a route that looks a pair up with find_market.
NOT_FOUND = {404: ResponseSpec(Problem, description="Unknown exchange or pair")}

# A pooled connection, injected by name (see create_app's dependencies).
Connection = NamedDependency[AsyncConnection]

ExchangeParam = Annotated[
    str,
    Parameter(
        description="Exchange id, any case; `-` and `_` are ignored (`binance-us` = `binanceus`).",
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
    ),
]
SymbolParam = Annotated[
    str,
    Parameter(
        description="Pair as base and quote, any case, optionally joined by `-`, `_` or `.`: "
        "`btcusd`, `BTC-USD` and `btc_usd` are the same pair.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    ),
]


async def provide_connection(state: State) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for one request, returned to the pool afterwards."""
    async with state.pool.connection() as conn:
        yield conn


async def find_market(conn: AsyncConnection, exchange: str, symbol: str) -> tuple[int, str, str]:
    """The (id, exchange, symbol) of a pair as a user names it; 404 naming what is unknown."""
    exchange, symbol = normalise_exchange(exchange), normalise_symbol_query(symbol)
    cursor = await conn.execute(QUERIES["market"], {"exchange": exchange, "symbol": symbol})
    market = await cursor.fetchone()
    if market is None:
        await explain_unknown_market(conn, exchange, symbol)
    market_id, exchange, symbol = market
    return market_id, exchange, symbol


async def explain_unknown_market(conn: AsyncConnection, exchange: str, symbol: str) -> NoReturn:
    """404 for a pair not stored, naming whether the exchange is unknown or only the pair."""
    cursor = await conn.execute(QUERIES["exchange_known"], {"exchange": exchange})
    known = await cursor.fetchone()
    what = f"pair {symbol!r} on exchange {exchange!r}" if known and known[0] else None
    raise NotFoundException(f"unknown {what or f'exchange {exchange!r}'}")


@get(
    "/prices/{exchange:str}/{symbol:str}",
    summary="A pair's last 24 hours of prices",
    media_type=MediaType.JSON,
    responses={200: ResponseSpec(PriceHistory, description="Request fulfilled")} | NOT_FOUND,
)
async def price_history(state: State, exchange: ExchangeParam, symbol: SymbolParam) -> bytes:
    """Prices of the last 24 hours, oldest first, with their sample standard deviation (`stdv`)
    and the pair's place in the volatility ranking (`rank` of `ranked`)."""
    exchange, symbol = normalise_exchange(exchange), normalise_symbol_query(symbol)
    cache: ResponseCache = state.cache
    key = ("prices", exchange, symbol)
    if (body := cache.get(key)) is not None:
        return body
    generation = cache.generation()
    async with state.pool.connection() as conn:
        cursor = await conn.execute(
            QUERIES["price_history_24h"], {"exchange": exchange, "symbol": symbol}, binary=True
        )
        row = await cursor.fetchone()
        if row is None:
            await explain_unknown_market(conn, exchange, symbol)
    exchange, symbol, times, prices, stdv, fresh_seconds, rank, ranked = row
    if not times:
        raise NotFoundException(f"no price of {symbol!r} on {exchange!r} in the last 24 hours")
    history = PriceHistory(
        exchange=exchange,
        symbol=symbol,
        prices=[
            Price(exchange, symbol, price, time) for time, price in zip(times, prices, strict=True)
        ],
        stdv=stdv,
        rank=rank,
        ranked=ranked,
    )
    body = encode_json(history)
    cache.put(key, body, generation, fresh_for=fresh_seconds)
    return body


@get("/health", summary="Database reachability and freshness of the data")
async def health(conn: Connection, state: State) -> Health:
    """`ok` with the newest tick's time and age, the storage mode and whether responses are
    cached; 503 (by the app's handler) when the DB is down."""
    cursor = await conn.execute(QUERIES["newest_tick"])
    newest, age = await cursor.fetchone() or (None, None)
    mode = await detect_storage_mode(conn)
    compression = "available" if mode == "timescale" else "unavailable"
    return Health("ok", "reachable", newest, age, mode, compression, state.cache.status)
