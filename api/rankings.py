"""`GET /rankings`: currency pairs ranked by 24-hour volatility."""

from typing import Annotated, Literal

from litestar import get
from litestar.params import Parameter

from api.models import RankedPair, Rankings
from api.routes import QUERIES, Connection
from datatracker.symbols import normalise_exchange

RankBy = Literal["cv", "stdv"]


@get("/rankings", summary="Pairs ranked by 24-hour volatility")
async def rankings(
    conn: Connection,
    by: Annotated[
        RankBy,
        Parameter(description="`cv` (stdv / mean, comparable across price levels) or `stdv`."),
    ] = "cv",
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0,
    exchange: Annotated[str | None, Parameter(pattern=r"^[A-Za-z0-9_-]{1,40}$")] = None,
) -> Rankings:
    """Most volatile first over the 24 hours up to `as_of`: the ranking the collector stored
    after its latest cycle. Ranks are over all exchanges."""
    exchange = exchange and normalise_exchange(exchange)
    cursor = await conn.execute(
        QUERIES["rankings"],
        {"by": by, "exchange": exchange, "limit": limit, "offset": offset},
    )
    rows = await cursor.fetchall()
    as_of, ranked = rows[0][:2] if rows else (None, 0)
    pairs = [RankedPair(*row[2:]) for row in rows if row[2] is not None]
    return Rankings(by, exchange, ranked, limit, offset, pairs, as_of)
