"""`GET /rankings`: currency pairs ranked by 24-hour volatility."""

from typing import Annotated, Literal

from litestar import MediaType, get
from litestar.datastructures import State
from litestar.openapi.spec import Example
from litestar.params import Parameter
from litestar.serialization import encode_json

from api.cache import RANKING, ResponseCache
from api.docs import NOT_FOUND_EXAMPLE, RANKINGS_EXAMPLE, documented
from api.models import Problem, RankedPair, Rankings
from api.routes import EXCHANGE_PATTERN, QUERIES, exchange_named, require_exchange

RankBy = Literal["cv", "stdv"]


@get(
    "/rankings",
    summary="Pairs ranked by 24-hour volatility",
    media_type=MediaType.JSON,
    responses={
        200: documented(Rankings, "Request fulfilled", RANKINGS_EXAMPLE),
        404: documented(Problem, "Unknown exchange", NOT_FOUND_EXAMPLE),
    },
)
async def rankings(
    state: State,
    by: Annotated[
        RankBy,
        Parameter(description="`cv` (stdv / mean, comparable across price levels) or `stdv`."),
    ] = "cv",
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0,
    exchange: Annotated[
        str | None,
        Parameter(
            description="Only this exchange's pairs (named as in /prices); 404 if none is stored.",
            pattern=EXCHANGE_PATTERN,
            examples=[Example(value="kraken")],
        ),
    ] = None,
) -> bytes:
    """Most volatile first over the 24 hours up to `as_of`: the ranking the collector stored
    after its latest cycle. Ranks are over all exchanges."""
    exchange = exchange if exchange is None else exchange_named(exchange)
    cache: ResponseCache = state.cache
    key = ("rankings", by, exchange, limit, offset)
    if (body := await cache.get_synced(key, bytes)) is not None:
        return body
    token = cache.token(RANKING)
    await cache.caught_up()
    async with state.pool.connection() as conn:
        if exchange is not None:
            await require_exchange(conn, exchange)
        cursor = await conn.execute(
            QUERIES["rankings"],
            {"by": by, "exchange": exchange, "limit": limit, "offset": offset},
        )
        rows = await cursor.fetchall()
    as_of, ranked = rows[0][:2] if rows else (None, 0)
    pairs = [RankedPair(*row[2:]) for row in rows if row[2] is not None]
    body = encode_json(Rankings(by, exchange, ranked, limit, offset, pairs, as_of))
    cache.put(key, body, len(body), token)
    return body
