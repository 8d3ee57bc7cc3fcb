"""The original design's read, served the same way as the API for a fair comparison.

The same framework, server, pool and response body as `api`, but the query the ORM issued:
a filter and sort on `original_prices` (no index on exchange, symbol, time), and the standard
deviation computed in Python. `python -m bench.original_api --database-url URL --port 8001`.
"""

import argparse
import statistics
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import uvicorn
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException

from api.models import Price, PriceHistory
from bench.databases import QUERIES
from datatracker.database import create_pool


@get("/prices/{exchange:str}/{symbol:str}")
async def original_price_history(state: State, exchange: str, symbol: str) -> PriceHistory:
    """One pair's last 24 hours the original way; stdev in Python."""
    async with state.pool.connection() as conn:
        cursor = await conn.execute(
            QUERIES["original_price_history"], {"exchange": exchange, "symbol": symbol}
        )
        rows = await cursor.fetchall()
    if not rows:
        raise NotFoundException(f"no price of {symbol!r} on {exchange!r}")
    prices = [price for price, _ in rows]
    return PriceHistory(
        exchange=exchange,
        symbol=symbol,
        prices=[Price(exchange, symbol, price, time) for price, time in rows],
        stdv=statistics.stdev(prices) if len(prices) > 1 else None,
    )


def create_original_app(database_url: str, pool_size: int = 10) -> Litestar:
    """The original read as a Litestar app whose pool opens and closes with its lifespan."""
    pool = create_pool(database_url, max_size=pool_size, name="original")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await pool.open(wait=True)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    return Litestar(route_handlers=[original_price_history], lifespan=[lifespan])


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the original read on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m bench.original_api", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args(argv)
    app = create_original_app(args.database_url, args.pool_size)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
