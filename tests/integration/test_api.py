"""The HTTP API over a real TimescaleDB: the original's contract, the 24-hour window, errors."""

import json
import math
import statistics
from datetime import datetime, timedelta

import httpx
import psycopg
import pytest

from collector.ticks import Tick
from collector.writer import write_ticks
from datatracker.settings import load_settings
from tests.api_server import serve_api


def btc(now: datetime, minutes_ago: float, price: float) -> Tick:
    return Tick(now - timedelta(minutes=minutes_ago), "kraken", "btcusd", "BTC", "USD", price)


@pytest.fixture
async def history(conn: psycopg.AsyncConnection, now: datetime) -> list[Tick]:
    """Ten minutes of kraken BTC/USD, written out of order, plus an ETH pair."""
    ticks = [btc(now, m, 97000 + 37.5 * math.sin(m)) for m in (3, 1, 9, 0, 5, 2, 8, 4, 7, 6)]
    ticks.append(Tick(now, "kraken", "ethusd", "ETH", "USD", 3400.0))
    await write_ticks(conn, ticks)
    return sorted(ticks[:-1], key=lambda tick: tick.time)


async def test_prices_are_the_original_shape_oldest_first(
    api: httpx.AsyncClient, history: list[Tick]
) -> None:
    """`prices` lists exchange, symbol, price and updated_at (ISO 8601 UTC), oldest first."""
    response = await api.get("/prices/kraken/btcusd")

    assert 200 == response.status_code
    body = response.json()
    expected = [
        {
            "exchange": "kraken",
            "symbol": "btcusd",
            "price": tick.price,
            "updated_at": tick.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for tick in history
    ]
    assert expected == body["prices"]


async def test_stdv_is_the_sample_standard_deviation_of_the_prices(
    api: httpx.AsyncClient, history: list[Tick]
) -> None:
    """`stdv` equals statistics.stdev of exactly the prices returned."""
    body = (await api.get("/prices/kraken/btcusd")).json()
    expected = statistics.stdev(price["price"] for price in body["prices"])
    assert expected == pytest.approx(body["stdv"], rel=1e-9)


async def test_a_single_price_has_no_stdv(api: httpx.AsyncClient, history: list[Tick]) -> None:
    """With one price the sample standard deviation is undefined: null."""
    body = (await api.get("/prices/kraken/ethusd")).json()
    assert (1, None) == (len(body["prices"]), body["stdv"])


@pytest.mark.parametrize("spelling", ["btcusd", "BTCUSD", "BTC-USD", "btc_usd", "Btc-Usd"])
async def test_symbol_spellings_name_one_pair(
    api: httpx.AsyncClient, history: list[Tick], spelling: str
) -> None:
    """Case and `-`/`_` separators do not matter in the symbol."""
    response = await api.get(f"/prices/KRAKEN/{spelling}")
    assert (200, 10) == (response.status_code, len(response.json()["prices"]))


async def test_the_window_is_exactly_24_hours(
    api: httpx.AsyncClient, conn: psycopg.AsyncConnection, now: datetime
) -> None:
    """A tick 24 h + 1 s old is out; one 30 s short of 24 h is in."""
    day = 24 * 60
    ticks = [btc(now, day + 1 / 60, 1.0), btc(now, day - 0.5, 2.0), btc(now, 0, 3.0)]
    await write_ticks(conn, ticks)

    body = (await api.get("/prices/kraken/btcusd")).json()

    assert [2.0, 3.0] == [price["price"] for price in body["prices"]]


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/prices/nowhere/btcusd", 404, "unknown exchange 'nowhere'"),
        ("/prices/kraken/dogeusd", 404, "unknown pair 'dogeusd' on exchange 'kraken'"),
        ("/prices/kraken/solusd", 404, "no price of 'solusd' on 'kraken' in the last 24 hours"),
        ("/prices/kraken", 404, None),
        ("/prices/kraken/btc%20usd", 400, None),
        ("/prices/kraken/b%C3%A9", 400, None),
        ("/prices/kraken/" + "x" * 65, 400, None),
        ("/prices/kra!ken/btcusd", 400, None),
        ("/prices/kraken/'%3B%20DROP%20TABLE%20ticks%3B--", 400, None),
    ],
)
async def test_errors_are_json_with_the_right_status(
    api: httpx.AsyncClient,
    conn: psycopg.AsyncConnection,
    history: list[Tick],
    now: datetime,
    path: str,
    status: int,
    detail: str | None,
) -> None:
    """Unknown names and stale pairs are 404, malformed values 400, always as JSON."""
    stale = Tick(now - timedelta(days=2), "kraken", "solusd", "SOL", "USD", 190.0)
    await write_ticks(conn, [stale])

    response = await api.get(path)

    assert (status, "application/json") == (
        response.status_code,
        response.headers["content-type"],
    )
    if detail:
        assert detail == response.json()["detail"]


async def test_openapi_schema_documents_the_prices_route(api: httpx.AsyncClient) -> None:
    """The app serves its OpenAPI schema, including /prices."""
    schema = (await api.get("/schema/openapi.json")).json()
    assert "/prices/{exchange}/{symbol}" in schema["paths"]


async def test_health_reports_the_newest_tick(
    api: httpx.AsyncClient, history: list[Tick], now: datetime
) -> None:
    """/health says the database answers and how old the newest tick is."""
    body = (await api.get("/health")).json()
    assert ("ok", now.strftime("%Y-%m-%dT%H:%M:%SZ")) == (body["status"], body["newest_tick"])
    assert 0 <= body["newest_tick_age_seconds"] < 60


async def test_an_unreachable_database_is_a_json_503() -> None:
    """With the database down, the API answers 503 with a JSON body instead of failing."""
    settings = load_settings(_env_file=None, database_url="postgresql://x@127.0.0.1:9/none")
    async with serve_api(settings) as api:
        responses = [await api.get("/health"), await api.get("/prices/kraken/btcusd")]
    assert [503, 503] == [response.status_code for response in responses]
    assert ["application/json"] * 2 == [r.headers["content-type"] for r in responses]


async def test_rankings_of_an_unknown_exchange_is_404(
    api: httpx.AsyncClient, history: list[Tick]
) -> None:
    """/rankings?exchange=nope says 404 like /prices does, not an empty 200."""
    response = await api.get("/rankings", params={"exchange": "nope"})

    assert (404, "unknown exchange 'nope'") == (response.status_code, response.json()["detail"])


@pytest.mark.parametrize("path", ["/rankings?exchange=---", "/prices/---/btcusd"])
async def test_an_exchange_of_separators_only_is_400(
    api: httpx.AsyncClient, history: list[Tick], path: str
) -> None:
    """`---` names no exchange: 400, not an answer about the exchange ''."""
    response = await api.get(path)

    assert 400 == response.status_code
    assert "''" not in response.text


@pytest.mark.parametrize(
    "path", ["/prices/kraken%0A/btcusd", "/prices/kraken/btcusd%0A", "/rankings?exchange=kraken%0A"]
)
async def test_a_trailing_newline_is_not_part_of_a_valid_name(
    api: httpx.AsyncClient, history: list[Tick], path: str
) -> None:
    """The patterns' `$` would let a trailing newline through; the lookahead refuses it."""
    assert 400 == (await api.get(path)).status_code


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/prices/kraken/{}", "x" * 300),
        ("/prices/{}/btcusd", "k" * 300),
        ("/rankings?exchange={}", "y" * 300),
        ("/prices/kraken/btcusd/candles?start={}", "2" * 39),
    ],
)
async def test_a_400_echoes_only_a_short_prefix(
    api: httpx.AsyncClient, path: str, value: str
) -> None:
    """However long the offending value, the answer shows at most a short prefix of it."""
    response = await api.get(path.format(value))

    assert 400 == response.status_code
    assert len(response.json()["detail"]) <= 96
    assert value[:80] not in response.text


@pytest.mark.parametrize(
    "path", ["/prices/kraken/btcusd", "/rankings", "/schema/openapi.json", "/prices/nope/btcusd"]
)
async def test_head_answers_like_get_without_a_body(
    api: httpx.AsyncClient, history: list[Tick], path: str
) -> None:
    """HEAD on a GET route has GET's status and headers (Content-Length included), no body."""
    got = await api.get(path)
    head = await api.head(path)

    assert (got.status_code, got.headers["content-length"], b"") == (
        head.status_code,
        head.headers["content-length"],
        head.content,
    )


async def test_the_schema_shows_real_examples(api: httpx.AsyncClient) -> None:
    """The documented answers are a real pair with plausible prices and ISO times, not values
    Litestar made up."""
    schema = (await api.get("/schema/openapi.json")).json()
    prices = schema["paths"]["/prices/{exchange}/{symbol}"]["get"]
    example = prices["responses"]["200"]["content"]["application/json"]["examples"]
    value = next(iter(example.values()))["value"]
    parameters = {p["name"]: p["examples"] for p in prices["parameters"]}

    assert ("kraken", "btcusd") == (value["exchange"], value["symbol"])
    assert all(90_000 < point["price"] < 110_000 for point in value["prices"])
    assert all(datetime.fromisoformat(point["updated_at"]) for point in value["prices"])
    assert "kraken" == next(iter(parameters["exchange"].values()))["value"]
    assert "examples" not in json.dumps(schema["components"]["schemas"])
