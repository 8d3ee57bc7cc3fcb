"""A fake exchange HTTP server that answers ccxt's async clients with real response shapes.

One `aiohttp.web` server on 127.0.0.1 serves binance, coinbase, kraken, bitstamp and okx,
each under its own prefix (`/binance/api/v3/...`, `/kraken/0/public/...`). Point a ccxt
instance at it by replacing the scheme and host of every `https://…` base in
`exchange.urls['api']` with `server.url_for(exchange.id)`, keeping the path part
(production code does this in `collector.sources.live.point_at`)::

    async with FakeExchangeServer.with_default_markets() as server:
        exchange = ccxt.async_support.kraken({"enableRateLimit": False, "timeout": 5000,
                                              "options": {"fetchMarkets": {"types": ["spot"]}}})
        exchange.has["fetchCurrencies"] = False
        point_at(exchange, server.url_for("kraken"))
        try:
            tickers = await exchange.fetch_tickers()   # {"BTC/USD": {..., "last": 96950.5}, ...}
        finally:
            await exchange.close()

Endpoints served, as ccxt 4.5.90 calls them (spot markets only, no currencies):

- binance: markets `/api/v3/exchangeInfo`; tickers `/api/v3/ticker/24hr` (and `/ticker/price`);
  candles `/api/v3/klines`.
- coinbase: markets and tickers both `/api/v3/brokerage/market/products` (load_markets also
  asks `?product_type=FUTURE`, answered empty); candles `.../products/{id}/candles`.
- kraken: markets `/0/public/AssetPairs`; tickers `/0/public/Ticker`; candles `/0/public/OHLC`.
- bitstamp: markets `/api/v2/markets/`; tickers `/api/v2/ticker/`; candles `/api/v2/ohlc/{pair}/`.
- okx: markets `/api/v5/public/instruments?instType=SPOT`; tickers
  `/api/v5/market/tickers?instType=SPOT`; candles `/api/v5/market/candles`, or
  `/market/history-candles` when `since` is over a day old.

Tests mutate `markets`, `candles` and `faults` between requests; every request's path and
query is appended to `requests`. A `Fault` applies to the exchange's ticker endpoints; for
coinbase that is also the markets endpoint, exactly as on the real exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Self

from aiohttp import web

EXCHANGES = ("binance", "coinbase", "kraken", "bitstamp", "okx")
MINUTE_MS = 60_000
DAY_MS = 86_400_000

Json = Any
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeMarket:
    """A spot market as the fake exchange lists it; `price` may be a bad value on purpose."""

    base: str
    quote: str
    price: float | str | None


@dataclass
class Fault:
    """What the fake does instead of answering an exchange's ticker endpoint normally."""

    status: int = 200
    body: str | None = None  # raw body sent instead of the normal JSON
    delay_seconds: float = 0
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None  # how many ticker requests it spoils; None: all of them


# --- values ---------------------------------------------------------------------------------


def _num(value: float | str | None) -> str | None:
    """Exchanges send decimals as plain strings ("0.00001234", never "1.234e-05")."""
    if value is None or isinstance(value, str):
        return value
    return format(Decimal(repr(value)), "f")


def _price(market: FakeMarket) -> float | None:
    """The market's price as a number, or None when a test injected a non-numeric value."""
    try:
        price = float(market.price)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) else None


def _ref(market: FakeMarket) -> str | None:
    """Bid/ask/open/high/low: only the reported last price carries an injected bad value."""
    return _num(_price(market))


def _tick(market: FakeMarket) -> str:
    """Price increment: cents for coins worth a dollar or more, finer for sub-cent coins."""
    price = _price(market)
    return "0.01" if price is None or price >= 1 else "0.00000001"


# --- market ids --------------------------------------------------------------------------------

# Kraken's legacy assets carry an X (crypto) or Z (fiat) prefix, and bitcoin is XBT.
KRAKEN_ASSETS = {
    "BTC": "XXBT", "ETH": "XETH", "LTC": "XLTC", "XRP": "XXRP", "XLM": "XXLM", "XMR": "XXMR",
    "ZEC": "XZEC", "ETC": "XETC", "DOGE": "XXDG", "USD": "ZUSD", "EUR": "ZEUR", "GBP": "ZGBP",
    "CAD": "ZCAD", "JPY": "ZJPY", "AUD": "ZAUD",
}  # fmt: skip
KRAKEN_ALTNAMES = {"BTC": "XBT", "DOGE": "XDG"}


def _kraken_asset(code: str) -> str:
    return KRAKEN_ASSETS.get(code, code)


def _kraken_altname(market: FakeMarket) -> str:
    return KRAKEN_ALTNAMES.get(market.base, market.base) + KRAKEN_ALTNAMES.get(
        market.quote, market.quote
    )


def _kraken_id(market: FakeMarket) -> str:
    """Pairs of two legacy assets are keyed by both prefixed names (XXBTZUSD), others by altname."""
    if market.base in KRAKEN_ASSETS and market.quote in KRAKEN_ASSETS:
        return _kraken_asset(market.base) + _kraken_asset(market.quote)
    return _kraken_altname(market)


MARKET_IDS: dict[str, Callable[[FakeMarket], str]] = {
    "binance": lambda m: f"{m.base}{m.quote}",
    "coinbase": lambda m: f"{m.base}-{m.quote}",
    "kraken": _kraken_id,
    "bitstamp": lambda m: f"{m.base}{m.quote}".lower(),
    "okx": lambda m: f"{m.base}-{m.quote}",
}


# --- binance -----------------------------------------------------------------------------------


def binance_symbol(market: FakeMarket) -> Json:
    """One `exchangeInfo` symbol with the filters ccxt reads for precision and limits."""
    return {
        "symbol": MARKET_IDS["binance"](market), "status": "TRADING",
        "baseAsset": market.base, "baseAssetPrecision": 8,
        "quoteAsset": market.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": _tick(market), "maxPrice": "1000000.00",
             "tickSize": _tick(market)},
            {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00",
             "stepSize": "0.00001"},
            {"filterType": "NOTIONAL", "minNotional": "5.00", "maxNotional": "9000000.00"},
        ],
        "permissions": [], "permissionSets": [["SPOT"]],
    }  # fmt: skip


def binance_ticker(market: FakeMarket, now_ms: int) -> Json:
    """One `ticker/24hr` entry; `bidQty` is what makes ccxt treat it as a spot ticker."""
    ref = _ref(market)
    return {
        "symbol": MARKET_IDS["binance"](market), "priceChange": "0", "priceChangePercent": "0",
        "weightedAvgPrice": ref, "prevClosePrice": ref, "lastPrice": _num(market.price),
        "lastQty": "0.1", "bidPrice": ref, "bidQty": "1.5", "askPrice": ref, "askQty": "2.5",
        "openPrice": ref, "highPrice": ref, "lowPrice": ref, "volume": "1000", "quoteVolume": None,
        "openTime": now_ms - DAY_MS, "closeTime": now_ms, "firstId": 1, "lastId": 1000,
        "count": 1000,
    }  # fmt: skip


def binance_kline(open_ms: int, close: float) -> Json:
    c = _num(close)
    return [open_ms, c, c, c, c, "1", open_ms + MINUTE_MS - 1, c, 10, "0.5", _num(close / 2), "0"]


# --- coinbase ----------------------------------------------------------------------------------


def coinbase_product(market: FakeMarket) -> Json:
    """One advanced-trade product: market definition and ticker in one (no time, no bid/ask)."""
    product_id = MARKET_IDS["coinbase"](market)
    return {
        "product_id": product_id, "price": _num(market.price),
        "price_percentage_change_24h": "0", "volume_24h": "1000",
        "volume_percentage_change_24h": "0", "base_increment": "0.00000001",
        "quote_increment": _tick(market), "price_increment": _tick(market),
        "quote_min_size": "1", "quote_max_size": "150000000", "base_min_size": "0.00000001",
        "base_max_size": "3400", "base_name": market.base, "quote_name": market.quote,
        "watched": False, "is_disabled": False, "new": False, "status": "online",
        "cancel_only": False, "limit_only": False, "post_only": False, "trading_disabled": False,
        "auction_mode": False, "product_type": "SPOT", "quote_currency_id": market.quote,
        "base_currency_id": market.base, "fcm_trading_session_details": None,
        "mid_market_price": "", "alias": "", "alias_to": [], "base_display_symbol": market.base,
        "quote_display_symbol": market.quote, "view_only": False, "display_name": product_id,
        "product_venue": "CBE", "approximate_quote_24h_volume": None,
    }  # fmt: skip


def coinbase_candle(open_ms: int, close: float) -> Json:
    c = _num(close)
    return {
        "start": str(open_ms // 1000),
        "low": c,
        "high": c,
        "open": c,
        "close": c,
        "volume": "1",
    }


# --- kraken ------------------------------------------------------------------------------------


def kraken_pair(market: FakeMarket) -> Json:
    """One `AssetPairs` entry; ccxt maps the prefixed `base`/`quote` back to BTC, USD, …"""
    quote = _kraken_asset(market.quote)
    return {
        "altname": _kraken_altname(market),
        "wsname": "/".join(KRAKEN_ALTNAMES.get(c, c) for c in (market.base, market.quote)),
        "aclass_base": "currency", "base": _kraken_asset(market.base),
        "aclass_quote": "currency", "quote": quote, "lot": "unit",
        "cost_decimals": 5, "pair_decimals": 1 if _tick(market) == "0.01" else 8,
        "lot_decimals": 8, "lot_multiplier": 1, "leverage_buy": [], "leverage_sell": [],
        "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25], [10000, 0.2]],
        "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
        "ordermin": "0.00005", "costmin": "0.5", "tick_size": _tick(market), "status": "online",
    }  # fmt: skip


def kraken_ticker(market: FakeMarket) -> Json:
    """One `Ticker` entry: arrays of [price, volume…], no timestamp at all."""
    ref = _ref(market)
    return {
        "a": [ref, "1", "1.000"], "b": [ref, "2", "2.000"], "c": [_num(market.price), "0.001"],
        "v": ["100", "1000"], "p": [ref, ref], "t": [100, 1000], "l": [ref, ref],
        "h": [ref, ref], "o": ref,
    }  # fmt: skip


def kraken_ohlc(open_ms: int, close: float) -> Json:
    c = _num(close)
    return [open_ms // 1000, c, c, c, c, c, "1", 10]


# --- bitstamp ----------------------------------------------------------------------------------


def bitstamp_market(market: FakeMarket) -> Json:
    return {
        "name": f"{market.base}/{market.quote}", "market_symbol": MARKET_IDS["bitstamp"](market),
        "base_currency": market.base, "base_decimals": 8, "counter_currency": market.quote,
        "counter_decimals": 2 if _tick(market) == "0.01" else 8, "minimum_order_value": "10",
        "trading": "Enabled", "instant_order_counter_decimals": 2,
        "instant_and_market_orders": "Enabled",
        "description": f"{market.base} / {market.quote}", "market_type": "SPOT",
    }  # fmt: skip


def bitstamp_ticker(market: FakeMarket, now_ms: int) -> Json:
    """One `ticker/` entry, keyed by "BTC/USD" and stamped in whole seconds."""
    ref = _ref(market)
    return {
        "timestamp": str(now_ms // 1000), "open": ref, "high": ref, "low": ref,
        "last": _num(market.price), "volume": "1000", "vwap": ref, "bid": ref, "ask": ref,
        "side": "0", "open_24": ref, "percent_change_24": "0.00", "market_type": "SPOT",
        "pair": f"{market.base}/{market.quote}",
    }  # fmt: skip


def bitstamp_ohlc(open_ms: int, close: float) -> Json:
    c = _num(close)
    return {"timestamp": str(open_ms // 1000), "open": c, "high": c, "low": c, "close": c,
            "volume": "1"}  # fmt: skip


# --- okx ---------------------------------------------------------------------------------------


def okx_instrument(market: FakeMarket) -> Json:
    return {
        "instType": "SPOT", "instId": MARKET_IDS["okx"](market), "uly": "", "instFamily": "",
        "baseCcy": market.base, "quoteCcy": market.quote, "settleCcy": "", "ctValCcy": "",
        "optType": "", "stk": "", "listTime": "1548133413000", "expTime": "", "lever": "10",
        "tickSz": _tick(market), "lotSz": "0.00000001", "minSz": "0.00001", "ctVal": "",
        "ctMult": "", "ctType": "", "alias": "", "state": "live", "maxLmtSz": "9999999999",
        "maxMktSz": "1000000", "maxTwapSz": "9999999999", "maxIcebergSz": "9999999999",
        "maxTriggerSz": "9999999999", "maxStopSz": "1000000", "ruleType": "normal",
        "category": "1",
    }  # fmt: skip


def okx_ticker(market: FakeMarket, now_ms: int) -> Json:
    """One `market/tickers` entry, stamped in milliseconds (as a string)."""
    ref = _ref(market)
    return {
        "instType": "SPOT", "instId": MARKET_IDS["okx"](market), "last": _num(market.price),
        "lastSz": "0.1", "askPx": ref, "askSz": "1", "bidPx": ref, "bidSz": "2", "open24h": ref,
        "high24h": ref, "low24h": ref, "volCcy24h": None, "vol24h": "1000", "ts": str(now_ms),
        "sodUtc0": ref, "sodUtc8": ref,
    }  # fmt: skip


def okx_candle(open_ms: int, close: float) -> Json:
    c = _num(close)
    return [str(open_ms), c, c, c, c, "1", c, c, "1"]


def okx_envelope(data: Json) -> Json:
    return {"code": "0", "msg": "", "data": data}


# Each exchange's answer when asked for a market it does not list.
UNKNOWN_MARKET: dict[str, tuple[int, Json]] = {
    "binance": (400, {"code": -1121, "msg": "Invalid symbol."}),
    "coinbase": (404, {"error": "NOT_FOUND", "message": "product not found"}),
    "kraken": (200, {"error": ["EQuery:Unknown asset pair"]}),
    "bitstamp": (404, {"status": "error", "reason": "Invalid pair.", "code": "API0007"}),
    "okx": (200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}),
}


# --- candle windows ----------------------------------------------------------------------------


def _minutes(start: int | None, end: int, limit: int, newest: bool) -> range:
    """Minute open times within [start, end]: the oldest `limit`, or the newest when asked."""
    last = end - end % MINUTE_MS
    first = None if start is None else -(-start // MINUTE_MS) * MINUTE_MS
    if newest or first is None:
        low = last - (limit - 1) * MINUTE_MS
        return range(low if first is None else max(low, first), last + 1, MINUTE_MS)
    return range(first, min(last, first + (limit - 1) * MINUTE_MS) + 1, MINUTE_MS)


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


# --- server ------------------------------------------------------------------------------------


class FakeExchangeServer:
    """An aiohttp server on a free 127.0.0.1 port answering five exchanges' public REST APIs."""

    def __init__(self) -> None:
        self.markets: dict[str, list[FakeMarket]] = {exchange: [] for exchange in EXCHANGES}
        self.candles: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        self.requests: list[str] = []
        self.faults: dict[str, Fault] = {}
        self.base_url = ""
        # Seconds since the epoch; replace for deterministic ticker timestamps and candle ends.
        self.clock: Callable[[], float] = time.time
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    @classmethod
    def with_default_markets(cls) -> Self:
        """A server listing a few realistic pairs on each exchange, sub-cent coins included."""
        server = cls()
        server.markets = {
            "binance": [FakeMarket("BTC", "USDT", 97000.01), FakeMarket("ETH", "USDT", 3400.5),
                        FakeMarket("SOL", "USDT", 190.25), FakeMarket("1INCH", "USDT", 0.4321),
                        FakeMarket("PEPE", "USDT", 0.00001876)],
            "coinbase": [FakeMarket("BTC", "USD", 96990.12), FakeMarket("ETH", "USD", 3399.87),
                         FakeMarket("SOL", "USD", 190.11), FakeMarket("1INCH", "USD", 0.4318),
                         FakeMarket("SHIB", "USD", 0.00002134)],
            "kraken": [FakeMarket("BTC", "USD", 96950.5), FakeMarket("BTC", "EUR", 92100.4),
                       FakeMarket("ETH", "USD", 3398.21), FakeMarket("SOL", "USD", 190.02),
                       FakeMarket("1INCH", "USD", 0.432), FakeMarket("SHIB", "USD", 0.00002131)],
            "bitstamp": [FakeMarket("BTC", "USD", 97010.0), FakeMarket("ETH", "USD", 3401.1),
                         FakeMarket("SOL", "USD", 190.3), FakeMarket("PEPE", "USD", 0.00001874)],
            "okx": [FakeMarket("BTC", "USDT", 97001.3), FakeMarket("ETH", "USDT", 3400.44),
                    FakeMarket("SOL", "USDT", 190.27), FakeMarket("1INCH", "USDT", 0.4322),
                    FakeMarket("PEPE", "USDT", 0.00001877)],
        }  # fmt: skip
        return server

    def url_for(self, exchange_id: str) -> str:
        """The base URL that replaces the scheme and host of `exchange_id`'s API URLs."""
        return f"{self.base_url}/{exchange_id}"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1 in the running event loop."""
        self._closing.clear()
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- plumbing ------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        routes: dict[str, Handler] = {
            "/binance/api/v3/exchangeInfo": self._binance_exchange_info,
            "/binance/api/v3/ticker/24hr": self._binance_tickers,
            "/binance/api/v3/ticker/price": self._binance_prices,
            "/binance/api/v3/klines": self._binance_klines,
            "/coinbase/api/v3/brokerage/market/products": self._coinbase_products,
            "/coinbase/api/v3/brokerage/market/products/{id}/candles": self._coinbase_candles,
            "/kraken/0/public/AssetPairs": self._kraken_asset_pairs,
            "/kraken/0/public/Ticker": self._kraken_tickers,
            "/kraken/0/public/OHLC": self._kraken_ohlc,
            "/bitstamp/api/v2/markets/": self._bitstamp_markets,
            "/bitstamp/api/v2/ticker/": self._bitstamp_tickers,
            "/bitstamp/api/v2/ohlc/{id}/": self._bitstamp_ohlc,
            "/okx/api/v5/public/instruments": self._okx_instruments,
            "/okx/api/v5/market/tickers": self._okx_tickers,
            "/okx/api/v5/market/candles": self._okx_candles,
            "/okx/api/v5/market/history-candles": self._okx_candles,
        }
        app.add_routes([web.get(path, handler) for path, handler in routes.items()])
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        return await handler(request)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _find(self, exchange: str, market_id: str) -> FakeMarket | None:
        for market in self.markets.get(exchange, []):
            # Kraken also accepts a pair's altname (XBTUSD for XXBTZUSD).
            ids = {MARKET_IDS[exchange](market)}
            if exchange == "kraken":
                ids.add(_kraken_altname(market))
            if market_id in ids:
                return market
        return None

    async def _ticker_response(self, exchange: str, payload: Json) -> web.Response:
        """The normal JSON answer, or the exchange's configured `Fault` instead."""
        fault = self.faults.get(exchange, Fault())
        if fault.times is not None:
            fault.times -= 1
            if fault.times < 0:
                fault = Fault()
        await self._delay(fault.delay_seconds)
        if fault.body is None:
            text, content_type = json.dumps(payload), "application/json"
        else:
            text = fault.body
            content_type = "application/json" if text[:1] in ("{", "[") else "text/html"
        headers = {"Content-Type": content_type, **fault.headers}
        return web.Response(status=fault.status, body=text.encode(), headers=headers)

    async def _delay(self, seconds: float) -> None:
        # A delayed answer ends early when the server closes, so close() never waits on it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _unknown_market(self, exchange: str) -> web.Response:
        status, payload = UNKNOWN_MARKET[exchange]
        return web.json_response(payload, status=status)

    def _candles(
        self,
        exchange: str,
        market: FakeMarket,
        start: int | None,
        end: int | None,
        limit: int,
        *,
        newest: bool = False,
    ) -> list[tuple[int, float]]:
        """Candles opened in [start, end] (ms, end capped at now), oldest first, at most `limit`.

        Configured `candles` win; otherwise flat candles at the market's price, one a minute.
        Without `start` (or with `newest`) the newest `limit` are kept, as exchanges do.
        """
        now = self._now_ms()
        end = now if end is None else min(end, now)
        configured = self.candles.get((exchange, market.base, market.quote))
        if configured is not None:
            rows = sorted(c for c in configured if (start is None or c[0] >= start) and c[0] <= end)
            return rows[-limit:] if newest or start is None else rows[:limit]
        price = _price(market)
        if price is None:
            return []
        return [(t, price) for t in _minutes(start, end, limit, newest)]

    # --- binance -------------------------------------------------------------------------------

    async def _binance_exchange_info(self, request: web.Request) -> web.Response:
        symbols = [binance_symbol(m) for m in self.markets.get("binance", [])]
        payload = {"timezone": "UTC", "serverTime": self._now_ms(), "rateLimits": [],
                   "exchangeFilters": [], "symbols": symbols}  # fmt: skip
        return web.json_response(payload)

    def _binance_selected(self, request: web.Request) -> list[FakeMarket]:
        # ccxt sends `symbols=["BTCUSDT",...]` (JSON) when fetch_tickers gets a symbol list.
        wanted = json.loads(request.query.get("symbols", "null"))
        markets = self.markets.get("binance", [])
        return [m for m in markets if wanted is None or MARKET_IDS["binance"](m) in wanted]

    async def _binance_tickers(self, request: web.Request) -> web.Response:
        now = self._now_ms()
        payload = [binance_ticker(m, now) for m in self._binance_selected(request)]
        return await self._ticker_response("binance", payload)

    async def _binance_prices(self, request: web.Request) -> web.Response:
        payload = [
            {"symbol": MARKET_IDS["binance"](m), "price": _num(m.price)}
            for m in self._binance_selected(request)
        ]
        return await self._ticker_response("binance", payload)

    async def _binance_klines(self, request: web.Request) -> web.Response:
        market = self._find("binance", request.query.get("symbol", ""))
        if market is None:
            return self._unknown_market("binance")
        q = request.query
        start, end = _int(q.get("startTime")), _int(q.get("endTime"))
        limit = min(int(q.get("limit", 500)), 1000)
        rows = self._candles("binance", market, start, end, limit)
        return web.json_response([binance_kline(t, c) for t, c in rows])

    # --- coinbase ------------------------------------------------------------------------------

    async def _coinbase_products(self, request: web.Request) -> web.Response:
        # ccxt's load_markets also asks for product_type=FUTURE: this fake lists spot only.
        spot = request.query.get("product_type", "SPOT") == "SPOT"
        wanted = request.query.getall("product_ids", [])
        products = [
            coinbase_product(m)
            for m in self.markets.get("coinbase", [])
            if spot and (not wanted or MARKET_IDS["coinbase"](m) in wanted)
        ]
        payload = {"products": products, "num_products": len(products)}
        return await self._ticker_response("coinbase", payload)

    async def _coinbase_candles(self, request: web.Request) -> web.Response:
        market = self._find("coinbase", request.match_info["id"])
        if market is None:
            return self._unknown_market("coinbase")
        q = request.query
        start, end = _int(q.get("start")), _int(q.get("end"))
        rows = self._candles(
            "coinbase",
            market,
            None if start is None else start * 1000,
            None if end is None else end * 1000,
            min(int(q.get("limit", 350)), 350),
        )
        # Coinbase lists candles newest first.
        return web.json_response({"candles": [coinbase_candle(t, c) for t, c in reversed(rows)]})

    # --- kraken --------------------------------------------------------------------------------

    async def _kraken_asset_pairs(self, request: web.Request) -> web.Response:
        markets = self.markets.get("kraken", [])
        result = {_kraken_id(m): kraken_pair(m) for m in markets}
        return web.json_response({"error": [], "result": result})

    async def _kraken_tickers(self, request: web.Request) -> web.Response:
        # No `pair` means every pair; otherwise a comma-separated list of ids or altnames.
        wanted = request.query.get("pair")
        markets = self.markets.get("kraken", [])
        if wanted is not None:
            found = (self._find("kraken", pair) for pair in wanted.split(","))
            markets = [m for m in found if m is not None]
        result = {_kraken_id(m): kraken_ticker(m) for m in markets}
        return await self._ticker_response("kraken", {"error": [], "result": result})

    async def _kraken_ohlc(self, request: web.Request) -> web.Response:
        market = self._find("kraken", request.query.get("pair", ""))
        if market is None:
            return self._unknown_market("kraken")
        since = _int(request.query.get("since"))
        # Kraken's `since` (seconds) is exclusive, and it only ever serves the newest 720.
        start = None if since is None else since * 1000 + 1
        rows = self._candles("kraken", market, start, None, 720, newest=True)
        last = rows[-1][0] // 1000 if rows else since or 0
        result = {_kraken_id(market): [kraken_ohlc(t, c) for t, c in rows], "last": last}
        return web.json_response({"error": [], "result": result})

    # --- bitstamp ------------------------------------------------------------------------------

    async def _bitstamp_markets(self, request: web.Request) -> web.Response:
        return web.json_response([bitstamp_market(m) for m in self.markets.get("bitstamp", [])])

    async def _bitstamp_tickers(self, request: web.Request) -> web.Response:
        now = self._now_ms()
        payload = [bitstamp_ticker(m, now) for m in self.markets.get("bitstamp", [])]
        return await self._ticker_response("bitstamp", payload)

    async def _bitstamp_ohlc(self, request: web.Request) -> web.Response:
        market = self._find("bitstamp", request.match_info["id"])
        if market is None:
            return self._unknown_market("bitstamp")
        q = request.query
        start, end = _int(q.get("start")), _int(q.get("end"))
        rows = self._candles(
            "bitstamp",
            market,
            None if start is None else start * 1000,
            None if end is None else end * 1000,
            min(int(q.get("limit", 1000)), 1000),
        )
        pair = f"{market.base}/{market.quote}"
        return web.json_response(
            {"data": {"pair": pair, "ohlc": [bitstamp_ohlc(*r) for r in rows]}}
        )

    # --- okx -----------------------------------------------------------------------------------

    async def _okx_instruments(self, request: web.Request) -> web.Response:
        # Futures, swaps and options are asked for separately; this fake lists spot only.
        spot = request.query.get("instType") == "SPOT"
        markets = self.markets.get("okx", []) if spot else []
        return web.json_response(okx_envelope([okx_instrument(m) for m in markets]))

    async def _okx_tickers(self, request: web.Request) -> web.Response:
        now = self._now_ms()
        spot = request.query.get("instType") == "SPOT"
        markets = self.markets.get("okx", []) if spot else []
        payload = okx_envelope([okx_ticker(m, now) for m in markets])
        return await self._ticker_response("okx", payload)

    async def _okx_candles(self, request: web.Request) -> web.Response:
        market = self._find("okx", request.query.get("instId", ""))
        if market is None:
            return self._unknown_market("okx")
        q = request.query
        # `before` and `after` are exclusive bounds; OKX serves the newest `limit`, newest first.
        before, after = _int(q.get("before")), _int(q.get("after"))
        start = None if before is None else before + 1
        end = None if after is None else after - 1
        limit = min(int(q.get("limit", 100)), 300)
        rows = self._candles("okx", market, start, end, limit, newest=True)
        return web.json_response(okx_envelope([okx_candle(t, c) for t, c in reversed(rows)]))
