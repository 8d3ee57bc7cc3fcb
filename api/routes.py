"""Route handlers: validate, run a named query, shape the response."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from litestar import get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from psycopg import AsyncConnection

from api.models import Health, Price, PriceHistory
from datatracker.queries import load_queries
from datatracker.symbols import normalise_exchange, normalise_symbol_query

QUERIES = load_queries(Path(__file__).with_name("queries.sql"))

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


@get("/prices/{exchange:str}/{symbol:str}", summary="A pair's last 24 hours of prices")
async def price_history(
    conn: AsyncConnection, exchange: ExchangeParam, symbol: SymbolParam
) -> PriceHistory:
    """Prices of the last 24 hours, oldest first, with their sample standard deviation (`stdv`)."""
    exchange, symbol = normalise_exchange(exchange), normalise_symbol_query(symbol)
    cursor = await conn.execute(QUERIES["market"], {"exchange": exchange, "symbol": symbol})
    market = await cursor.fetchone()
    if market is None:
        cursor = await conn.execute(QUERIES["exchange_known"], {"exchange": exchange})
        known = await cursor.fetchone()
        what = f"pair {symbol!r} on exchange {exchange!r}" if known and known[0] else None
        raise NotFoundException(f"unknown {what or f'exchange {exchange!r}'}")
    market_id, exchange, symbol = market
    cursor = await conn.execute(QUERIES["price_history_24h"], {"market_id": market_id})
    rows = await cursor.fetchall()
    if not rows:
        raise NotFoundException(f"no price of {symbol!r} on {exchange!r} in the last 24 hours")
    return PriceHistory(
        exchange=exchange,
        symbol=symbol,
        prices=[Price(exchange, symbol, price, time) for time, price, _ in rows],
        stdv=rows[0][2],
    )


@get("/health", summary="Database reachability and freshness of the data")
async def health(conn: AsyncConnection) -> Health:
    """`ok` with the newest tick's time and age; 503 (by the app's handler) when the DB is down."""
    cursor = await conn.execute(QUERIES["newest_tick"])
    row = await cursor.fetchone()
    newest, age = row if row else (None, None)
    return Health("ok", "reachable", newest, age)
