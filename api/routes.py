"""Route handlers: validate, run a named query, shape the response."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from litestar import get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from psycopg import AsyncConnection

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
        cursor = await conn.execute(QUERIES["exchange_known"], {"exchange": exchange})
        known = await cursor.fetchone()
        what = f"pair {symbol!r} on exchange {exchange!r}" if known and known[0] else None
        raise NotFoundException(f"unknown {what or f'exchange {exchange!r}'}")
    market_id, exchange, symbol = market
    return market_id, exchange, symbol


@get(
    "/prices/{exchange:str}/{symbol:str}",
    summary="A pair's last 24 hours of prices",
    responses=NOT_FOUND,
)
async def price_history(
    conn: Connection, exchange: ExchangeParam, symbol: SymbolParam
) -> PriceHistory:
    """Prices of the last 24 hours, oldest first, with their sample standard deviation (`stdv`)
    and the pair's place in the volatility ranking (`rank` of `ranked`)."""
    market_id, exchange, symbol = await find_market(conn, exchange, symbol)
    cursor = await conn.execute(QUERIES["price_history_24h"], {"market_id": market_id})
    rows = await cursor.fetchall()
    if not rows:
        raise NotFoundException(f"no price of {symbol!r} on {exchange!r} in the last 24 hours")
    cursor = await conn.execute(QUERIES["market_rank"], {"market_id": market_id})
    rank, ranked = await cursor.fetchone() or (None, 0)
    return PriceHistory(
        exchange=exchange,
        symbol=symbol,
        prices=[Price(exchange, symbol, price, time) for time, price, _ in rows],
        stdv=rows[0][2],
        rank=rank,
        ranked=ranked,
    )


@get("/health", summary="Database reachability and freshness of the data")
async def health(conn: Connection) -> Health:
    """`ok` with the newest tick's time and age and the storage mode; 503 (by the app's
    handler) when the DB is down."""
    cursor = await conn.execute(QUERIES["newest_tick"])
    newest, age = await cursor.fetchone() or (None, None)
    mode = await detect_storage_mode(conn)
    compression = "available" if mode == "timescale" else "unavailable"
    return Health("ok", "reachable", newest, age, mode, compression)
