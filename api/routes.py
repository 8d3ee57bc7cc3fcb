"""Route handlers: validate, run a named query, shape the response."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import msgspec
from litestar import MediaType, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter
from litestar.serialization import encode_json
from psycopg import AsyncConnection

from api.cache import RANKING, TICKS, ResponseCache
from api.docs import NOT_FOUND_EXAMPLE, PRICE_HISTORY_EXAMPLE, documented
from api.errors import clip
from api.models import Health, Price, PriceHistory, Problem
from datatracker.queries import load_queries
from datatracker.storage import detect_storage_mode
from datatracker.symbols import normalise_exchange, normalise_symbol_query

QUERIES = load_queries(Path(__file__).with_name("queries.sql"))

# What a kept Place counts against the cache's budget, roughly.
PLACE_BYTES = 64

# Documents the 404 of a route that looks a pair up with find_market.
NOT_FOUND = {404: documented(Problem, "Unknown exchange or pair", NOT_FOUND_EXAMPLE)}

# A pooled connection, injected by name (see create_app's dependencies).
Connection = NamedDependency[AsyncConnection]

# `(?!\n)`: in Python's regex (which checks the value) `$` also matches before a trailing
# newline; the lookahead refuses it and means the same in the schema's ECMAScript dialect.
# `(?=.*[A-Za-z0-9])`: `---` names no exchange.
EXCHANGE_PATTERN = r"^(?=.*[A-Za-z0-9])[A-Za-z0-9_-]{1,40}(?!\n)$"
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
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?!\n)$",
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
    cursor = await conn.execute(QUERIES["exchange_known"], {"exchange": exchange})
    known = await cursor.fetchone()
    what = f"pair {symbol!r} on exchange {exchange!r}" if known and known[0] else None
    raise NotFoundException(f"unknown {what or f'exchange {exchange!r}'}")


@dataclass(frozen=True, slots=True)
class StoredPrices:
    """A pair's prices of the last 24 hours as /prices shows them."""

    market_id: int
    exchange: str
    symbol: str
    prices: bytes  # the JSON array of Price
    stdv: float | None


@dataclass(frozen=True, slots=True)
class Place:
    """A pair's place in the stored ranking: `rank` (None if not ranked) of `ranked`."""

    rank: int | None
    ranked: int


@get(
    "/prices/{exchange:str}/{symbol:str}",
    summary="A pair's last 24 hours of prices",
    media_type=MediaType.JSON,
    responses={200: documented(PriceHistory, "Request fulfilled", PRICE_HISTORY_EXAMPLE)}
    | NOT_FOUND,
)
async def price_history(state: State, exchange: ExchangeParam, symbol: SymbolParam) -> bytes:
    """Prices of the last 24 hours, oldest first, with their sample standard deviation (`stdv`)
    and the pair's place in the volatility ranking (`rank` of `ranked`)."""
    exchange, symbol = exchange_named(exchange), normalise_symbol_query(symbol)
    cache: ResponseCache = state.cache
    # Kept apart, so that a ranking refresh costs each pair a rank lookup, not its prices.
    prices_key = ("prices", exchange, symbol)
    stored = cache.get(prices_key, StoredPrices)
    place = None if stored is None else cache.get(("rank", stored.market_id), Place)
    if stored is None or place is None:
        prices_token, rank_token = cache.token(TICKS), cache.token(RANKING)
        async with state.pool.connection() as conn:
            if stored is None:
                stored, fresh_seconds = await read_prices(conn, exchange, symbol)
                cache.put(prices_key, stored, len(stored.prices), prices_token, fresh_seconds)
            place = await read_place(conn, stored.market_id)
            cache.put(("rank", stored.market_id), place, PLACE_BYTES, rank_token)
    return encode_json(
        {  # PriceHistory, with the prices encoded already
            "exchange": stored.exchange,
            "symbol": stored.symbol,
            "prices": msgspec.Raw(stored.prices),
            "stdv": stored.stdv,
            "rank": place.rank,
            "ranked": place.ranked,
        }
    )


async def read_prices(
    conn: AsyncConnection, exchange: str, symbol: str
) -> tuple[StoredPrices, float]:
    """A pair's prices of the last 24 hours and how many seconds they stay right without a
    write; 404 when the pair is unknown or has no price in the window."""
    cursor = await conn.execute(
        QUERIES["price_history_24h"], {"exchange": exchange, "symbol": symbol}, binary=True
    )
    row = await cursor.fetchone()
    if row is None:
        await explain_unknown_market(conn, exchange, symbol)
    market_id, exchange, symbol, times, prices, stdv, fresh_seconds = row
    if not times:
        raise NotFoundException(f"no price of {symbol!r} on {exchange!r} in the last 24 hours")
    points = [Price(exchange, symbol, p, t) for t, p in zip(times, prices, strict=True)]
    return StoredPrices(market_id, exchange, symbol, encode_json(points), stdv), fresh_seconds


async def read_place(conn: AsyncConnection, market_id: int) -> Place:
    """A market's place in the stored ranking."""
    cursor = await conn.execute(QUERIES["market_rank"], {"market_id": market_id})
    rank, ranked = await cursor.fetchone() or (None, 0)
    return Place(rank, ranked)


@get(
    "/health",
    summary="Database reachability and freshness of the data",
    responses={503: ResponseSpec(Health, description="Stale data or cycles set aside")},
)
async def health(conn: Connection, state: State) -> Response[Health]:
    """`ok` with the newest tick's time and age, the storage mode and whether responses are
    cached; 503 with a reason when the newest tick is older than two collect intervals or the
    collector set cycles aside (and, by the app's handler, when the DB is down)."""
    cursor = await conn.execute(QUERIES["health"])
    newest, age, set_aside = await cursor.fetchone() or (None, None, 0)
    mode = await detect_storage_mode(conn)
    compression = "available" if mode == "timescale" else "unavailable"
    reasons = []
    if set_aside:
        reasons.append(f"{set_aside} cycles set aside by the collector (set_aside_cycles)")
    stale_after = 2 * state.settings.collect_interval_seconds
    if age is not None and age > stale_after:
        reasons.append(f"the newest tick is {age:.0f} s old, more than {stale_after} s")
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
        reason,
    )
    return Response(body, status_code=503 if reason else 200)
