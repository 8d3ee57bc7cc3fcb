"""ccxt's async clients load markets, tickers and candles from the fake exchange server."""

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import pytest

from tests.fake_exchange import EXCHANGES, FakeExchangeServer, FakeMarket, Fault

MINUTE_MS = 60_000
NOW_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z, the server's frozen clock
SINCE_MS = NOW_MS - 30 * MINUTE_MS

Connect = Callable[..., ccxt.Exchange]


def point_at(exchange: ccxt.Exchange, base_url: str) -> None:
    """Replace the scheme and host of every `https://…` API base with `base_url`, keeping paths."""

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: rewrite(item) for key, item in value.items()}
        if isinstance(value, str) and value.startswith("https://"):
            return base_url + urlsplit(value).path
        return value

    exchange.urls["api"] = rewrite(exchange.urls["api"])


@pytest.fixture
async def server() -> AsyncIterator[FakeExchangeServer]:
    async with FakeExchangeServer.with_default_markets() as server:
        server.clock = lambda: NOW_MS / 1000
        yield server


@pytest.fixture
async def connect(server: FakeExchangeServer) -> AsyncIterator[Connect]:
    """Build ccxt instances pointed at the server, and close them all afterwards."""
    created: list[ccxt.Exchange] = []

    def connect(exchange_id: str, timeout: int = 5000) -> ccxt.Exchange:
        exchange = getattr(ccxt, exchange_id)(
            {
                "enableRateLimit": False,
                "timeout": timeout,
                "options": {"fetchMarkets": {"types": ["spot"]}},
            }
        )
        exchange.has["fetchCurrencies"] = False
        exchange.timeout_on_exit = 0  # ccxt's close() waits 250 ms for TLS shutdown; no TLS here
        point_at(exchange, server.url_for(exchange_id))
        created.append(exchange)
        return exchange

    yield connect
    for exchange in created:
        await exchange.close()


def symbols(markets: list[FakeMarket]) -> list[str]:
    return sorted(f"{m.base}/{m.quote}" for m in markets)


def first_market(server: FakeExchangeServer, exchange_id: str) -> tuple[str, FakeMarket]:
    market = server.markets[exchange_id][0]
    return f"{market.base}/{market.quote}", market


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_load_markets_lists_configured_markets(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """load_markets() returns every configured market under its unified symbol."""
    exchange = connect(exchange_id)

    await exchange.load_markets()

    assert symbols(server.markets[exchange_id]) == sorted(exchange.symbols)


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_fetch_tickers_reports_configured_prices(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """fetch_tickers() returns each configured market's price as its last price."""
    exchange = connect(exchange_id)
    await exchange.load_markets()

    tickers = await exchange.fetch_tickers()

    expected = {f"{m.base}/{m.quote}": m.price for m in server.markets[exchange_id]}
    assert expected == {symbol: ticker["last"] for symbol, ticker in tickers.items()}


@pytest.mark.parametrize(
    ("exchange_id", "timestamp"),
    [
        ("binance", NOW_MS),
        ("coinbase", None),
        ("kraken", None),
        ("bitstamp", NOW_MS),  # whole seconds
        ("okx", NOW_MS),
    ],
)
async def test_tickers_are_timestamped_only_where_the_exchange_says_when(
    connect: Connect, exchange_id: str, timestamp: int | None
) -> None:
    """Tickers carry the server's time from binance, bitstamp and okx, and none elsewhere."""
    exchange = connect(exchange_id)
    await exchange.load_markets()

    tickers = await exchange.fetch_tickers()

    assert {timestamp} == {ticker["timestamp"] for ticker in tickers.values()}


@pytest.mark.parametrize(
    ("exchange_id", "paths"),
    [
        ("binance", ["/api/v3/exchangeInfo", "/api/v3/ticker/24hr"]),
        (
            "coinbase",
            [
                "/api/v3/brokerage/market/products",
                "/api/v3/brokerage/market/products?product_type=FUTURE",
                "/api/v3/brokerage/market/products",
            ],
        ),
        ("kraken", ["/0/public/AssetPairs", "/0/public/Ticker"]),
        ("bitstamp", ["/api/v2/markets/", "/api/v2/ticker/"]),
        (
            "okx",
            ["/api/v5/public/instruments?instType=SPOT", "/api/v5/market/tickers?instType=SPOT"],
        ),
    ],
)
async def test_requests_are_recorded_in_order(
    server: FakeExchangeServer, connect: Connect, exchange_id: str, paths: list[str]
) -> None:
    """The server records the path and query of each request ccxt makes, in order."""
    exchange = connect(exchange_id)
    await exchange.load_markets()

    await exchange.fetch_tickers()

    assert [f"/{exchange_id}{path}" for path in paths] == server.requests


async def test_kraken_bitcoin_markets_use_xbt_ids(connect: Connect) -> None:
    """Kraken lists bitcoin as XBT with X/Z-prefixed pair ids, which ccxt maps back to BTC."""
    exchange = connect("kraken")

    markets = await exchange.load_markets()

    expected = {
        "BTC/USD": ("XXBTZUSD", "XBTUSD", "XBT/USD"),
        "BTC/EUR": ("XXBTZEUR", "XBTEUR", "XBT/EUR"),
        "ETH/USD": ("XETHZUSD", "ETHUSD", "ETH/USD"),
        "SOL/USD": ("SOLUSD", "SOLUSD", "SOL/USD"),
    }
    actual = {s: (markets[s]["id"], markets[s]["altname"], markets[s]["wsId"]) for s in expected}
    assert expected == actual


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_fetch_ohlcv_returns_candles_in_range(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """fetch_ohlcv() returns `limit` one-minute candles from `since` at the market's price."""
    symbol, market = first_market(server, exchange_id)
    exchange = connect(exchange_id)
    await exchange.load_markets()

    candles = await exchange.fetch_ohlcv(symbol, "1m", since=SINCE_MS, limit=5)

    expected = [(SINCE_MS + i * MINUTE_MS, market.price) for i in range(5)]
    assert expected == [(candle[0], candle[4]) for candle in candles]


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_fetch_ohlcv_pages_follow_each_other(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """A second page asked from just after the first page's last candle continues it."""
    symbol, _ = first_market(server, exchange_id)
    exchange = connect(exchange_id)
    await exchange.load_markets()

    first = await exchange.fetch_ohlcv(symbol, "1m", since=SINCE_MS, limit=3)
    second = await exchange.fetch_ohlcv(symbol, "1m", since=first[-1][0] + MINUTE_MS, limit=3)

    expected = [SINCE_MS + i * MINUTE_MS for i in range(6)]
    assert expected == [candle[0] for candle in first + second]


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_fetch_ohlcv_ends_at_the_current_minute(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """Candles stop at the server clock's minute, so paging towards now ends."""
    symbol, _ = first_market(server, exchange_id)
    exchange = connect(exchange_id)
    await exchange.load_markets()

    candles = await exchange.fetch_ohlcv(symbol, "1m", since=NOW_MS - 2 * MINUTE_MS, limit=10)

    expected = [NOW_MS - 2 * MINUTE_MS, NOW_MS - MINUTE_MS, NOW_MS]
    assert expected == [candle[0] for candle in candles]


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_fetch_ohlcv_serves_configured_candles(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """Candles configured for a market replace the generated ones."""
    symbol, market = first_market(server, exchange_id)
    configured = [(SINCE_MS + i * MINUTE_MS, 100.0 + i) for i in range(4)]
    server.candles[(exchange_id, market.base, market.quote)] = configured
    exchange = connect(exchange_id)
    await exchange.load_markets()

    candles = await exchange.fetch_ohlcv(symbol, "1m", since=SINCE_MS, limit=10)

    assert configured == [(candle[0], candle[4]) for candle in candles]


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_markets_changed_between_requests_are_served(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """A new listing shows after reloading markets, and a changed price on the next fetch."""
    symbol, market = first_market(server, exchange_id)
    exchange = connect(exchange_id)
    await exchange.load_markets()
    market.price = 1.5
    server.markets[exchange_id].append(FakeMarket("NEWCOIN", market.quote, 0.25))

    await exchange.load_markets(reload=True)
    tickers = await exchange.fetch_tickers()

    expected = {symbol: 1.5, f"NEWCOIN/{market.quote}": 0.25}
    assert expected == {s: tickers[s]["last"] for s in expected}


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_missing_price_is_served_as_null(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """A market configured without a price comes back with no last price."""
    symbol, market = first_market(server, exchange_id)
    market.price = None
    exchange = connect(exchange_id)
    await exchange.load_markets()

    tickers = await exchange.fetch_tickers()

    assert tickers[symbol]["last"] is None


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_status_503_raises_exchange_not_available(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """A 503 on the ticker endpoint makes ccxt raise ExchangeNotAvailable."""
    exchange = connect(exchange_id)
    # Loaded before the fault: coinbase's ticker endpoint is also its markets endpoint.
    await exchange.load_markets()
    server.faults[exchange_id] = Fault(status=503, body="<html>Service Unavailable</html>")

    with pytest.raises(ccxt.ExchangeNotAvailable):
        await exchange.fetch_tickers()


@pytest.mark.parametrize("exchange_id", ["binance", "bitstamp"])
async def test_html_body_with_status_200_raises(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """An HTML page sent with status 200 leaks a plain AttributeError out of ccxt."""
    exchange = connect(exchange_id)
    await exchange.load_markets()
    server.faults[exchange_id] = Fault(body="<html><body>Just a moment...</body></html>")

    with pytest.raises(AttributeError):
        await exchange.fetch_tickers()


@pytest.mark.parametrize("exchange_id", ["coinbase", "kraken", "okx"])
async def test_html_body_with_status_200_yields_no_tickers(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """An HTML page sent with status 200 silently yields no tickers at all from these clients."""
    exchange = connect(exchange_id)
    await exchange.load_markets()
    server.faults[exchange_id] = Fault(body="<html><body>Just a moment...</body></html>")

    tickers = await exchange.fetch_tickers()

    assert not tickers


@pytest.mark.parametrize("exchange_id", EXCHANGES)
async def test_slow_ticker_raises_request_timeout(
    server: FakeExchangeServer, connect: Connect, exchange_id: str
) -> None:
    """A ticker answer slower than the client's timeout makes ccxt raise RequestTimeout."""
    exchange = connect(exchange_id, timeout=100)
    await exchange.load_markets()
    server.faults[exchange_id] = Fault(delay_seconds=5)

    with pytest.raises(ccxt.RequestTimeout):
        await exchange.fetch_tickers()
