"""`GET /prices/{exchange}/{symbol}/candles`: history beyond 24 hours, from the candle tables."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from litestar import get
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.openapi.spec import Example
from litestar.params import Parameter

from api.docs import CANDLES_EXAMPLE, documented
from api.errors import clip
from api.models import Candle, Candles
from api.routes import NOT_FOUND, QUERIES, Connection, ExchangeParam, SymbolParam, find_market

# A request returns at most this many candles: a longer range is cut to its newest part.
MAX_CANDLES = 5000


@dataclass(frozen=True, slots=True)
class Interval:
    """A candle width, the stored level it is combined from, and its default range."""

    width: timedelta
    level: Literal["5m", "1h"]
    default_range: timedelta


INTERVALS = {
    "5m": Interval(timedelta(minutes=5), "5m", timedelta(days=1)),
    "15m": Interval(timedelta(minutes=15), "5m", timedelta(days=3)),
    "30m": Interval(timedelta(minutes=30), "5m", timedelta(days=7)),
    "1h": Interval(timedelta(hours=1), "1h", timedelta(days=7)),
    "4h": Interval(timedelta(hours=4), "1h", timedelta(days=30)),
    "1d": Interval(timedelta(days=1), "1h", timedelta(days=365)),
}
IntervalName = Literal["5m", "15m", "30m", "1h", "4h", "1d"]
# Times as text parsed here: Litestar would also take a number (Unix seconds) for a
# datetime, which the schema's `date-time` does not allow.
TimeParam = Annotated[
    str | None,
    Parameter(
        description="ISO 8601 (`2026-01-31T12:00:00Z`), UTC if no zone; "
        "`start` defaults to the interval's usual range before `end`, `end` to now; "
        "at most 5000 candles before `end` are returned.",
        schema_extra={"format": "date-time"},
        max_length=40,
        examples=[Example(value="2026-11-25T03:00:00Z")],
    ),
]


def parse_time(text: str, name: str) -> datetime:
    """An ISO 8601 time, UTC if it names no zone; 400 when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationException(f"{name} is not an ISO 8601 time: {clip(text)}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def time_range(interval: Interval, start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """The requested [start, end): by default the interval's range up to now, and at most
    MAX_CANDLES candles back from `end`; 400 when `start` is after `end`."""
    stop = datetime.now(UTC) if end is None else parse_time(end, "end")
    begin = before(stop, interval.default_range) if start is None else parse_time(start, "start")
    if begin > stop:
        raise ValidationException(f"start ({begin.isoformat()}) is after end ({stop.isoformat()})")
    return max(begin, before(stop, MAX_CANDLES * interval.width)), stop


def before(moment: datetime, span: timedelta) -> datetime:
    """`moment - span`, or the earliest time there is when that falls before year 1."""
    try:
        return moment - span
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


@get(
    "/prices/{exchange:str}/{symbol:str}/candles",
    summary="A pair's candles over any range",
    responses={200: documented(Candles, "Request fulfilled", CANDLES_EXAMPLE)} | NOT_FOUND,
)
async def candles(
    conn: Connection,
    state: State,
    exchange: ExchangeParam,
    symbol: SymbolParam,
    interval: Annotated[IntervalName, Parameter(description="Candle width.")] = "1h",
    start: TimeParam = None,
    end: TimeParam = None,
) -> Candles:
    """Candles (OHLC, count, mean, sample stdv) starting in [start, end), oldest first; none
    when start equals end, 400 when it is after."""
    chosen = INTERVALS[interval]
    begin, stop = time_range(chosen, start, end)
    await state.cache.caught_up()  # on a standby: once it shows every change announced
    market_id, exchange, symbol = await find_market(conn, exchange, symbol)
    params = {
        "market_id": market_id,
        "level": chosen.level,
        "width": chosen.width,
        "start": begin,
        "end": stop,
    }
    cursor = await conn.execute(QUERIES["candles"], params)
    rows = [Candle(*row) for row in await cursor.fetchall()]
    return Candles(exchange, symbol, interval, begin, stop, rows)
