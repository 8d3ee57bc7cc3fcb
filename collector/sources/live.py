"""Live prices from the exchanges' public ticker endpoints, through ccxt's async client."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt

from collector.errors import describe
from collector.sources import HistoryBatch
from collector.ticks import Quote, Tick, exchange_time, valid_price
from datatracker.symbols import normalise_symbol

log = logging.getLogger(__name__)


class UnknownExchangeError(ValueError):
    """An exchange name that ccxt does not know."""


class RateLimitedError(RuntimeError):
    """The exchange asked us to slow down; `retry_after` is its Retry-After in seconds, if sent."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(
    headers: dict[str, str] | None, now: datetime | None = None
) -> float | None:
    """The Retry-After header (seconds, or an HTTP date) as seconds from now."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class EmptyTickersError(RuntimeError):
    """An exchange answered the ticker request with no prices at all.

    ccxt turns some unparseable bodies (an HTML page with status 200) into `{}`.
    """


def create_exchange(exchange_id: str, *, timeout_seconds: float, rate_limit: bool) -> Any:
    """A ccxt client restricted to spot markets, without the currencies request."""
    if exchange_id not in ccxt.exchanges:
        raise UnknownExchangeError(
            f"SUPPORTED_EXCHANGES: ccxt knows no exchange {exchange_id!r} "
            "(names are ccxt ids such as binance, coinbase, kraken, bitstamp, okx)"
        )
    exchange = getattr(ccxt, exchange_id)(
        {
            "enableRateLimit": rate_limit,
            "timeout": int(timeout_seconds * 1000),
            "options": {"fetchMarkets": {"types": ["spot"]}},
        }
    )
    exchange.has["fetchCurrencies"] = False
    return exchange


def point_at(exchange: Any, base_url: str) -> None:
    """Send every API request of `exchange` to `base_url/<exchange id>/<original path>`."""
    prefix = f"{base_url.rstrip('/')}/{exchange.id}"

    def rewrite(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            return prefix + urlsplit(value).path
        if isinstance(value, dict):
            return {key: rewrite(item) for key, item in value.items()}
        return value

    exchange.urls["api"] = rewrite(exchange.urls["api"])


def quotes_from_tickers(markets: dict[str, Any], tickers: dict[str, Any]) -> list[Quote]:
    """A quote per spot market in ccxt's unified tickers (its last price, or close).

    Values are checked row by row later (`normalise`); a timestamp that is no sane time
    becomes None here, so one bad row never costs the exchange its cycle.
    """
    quotes = []
    for symbol, ticker in tickers.items():
        market = markets.get(symbol)
        if not market or not market.get("spot") or not isinstance(ticker, dict):
            continue
        price = ticker.get("last") if ticker.get("last") is not None else ticker.get("close")
        sent = exchange_time(ticker.get("timestamp"))
        quotes.append(Quote(market.get("base"), market.get("quote"), price, sent))
    return quotes


def candle_ticks(
    exchange: str, base: str, quote: str, candles: list[Any], since: int, until: int
) -> list[Tick]:
    """A tick per 1-minute candle closing in (since, until] ms, at its close; bad rows skipped."""
    symbol = normalise_symbol(base, quote)
    ticks: dict[int, Tick] = {}
    for candle in candles:
        opened = candle[0] if isinstance(candle, list | tuple) and len(candle) > 4 else None
        if isinstance(opened, bool) or not isinstance(opened, int | float):
            continue
        closed, price = int(opened) + 60_000, valid_price(candle[4])
        when = exchange_time(closed)
        if price is not None and when is not None and since < closed <= until:
            ticks[closed] = Tick(when, exchange, symbol, base, quote, price)
    return [ticks[closed] for closed in sorted(ticks)]


class LiveSource:
    """Prices from real exchanges; one ccxt client per exchange, markets reloaded periodically."""

    def __init__(
        self,
        exchanges: Iterable[str],
        *,
        timeout_seconds: float,
        markets_reload_seconds: float,
        base_url: str | None = None,
        rate_limit: bool = True,
    ) -> None:
        self.exchanges = tuple(exchanges)
        self.expected_errors: tuple[type[Exception], ...] = (
            ccxt.BaseError,
            RateLimitedError,
            EmptyTickersError,
        )
        self._clients = {
            name: create_exchange(name, timeout_seconds=timeout_seconds, rate_limit=rate_limit)
            for name in self.exchanges
        }
        if base_url:
            for client in self._clients.values():
                point_at(client, base_url)
        self._markets_reload_seconds = markets_reload_seconds
        self._markets_loaded_at: dict[str, float] = {}

    async def _markets(self, exchange: str) -> dict[str, Any]:
        client = self._clients[exchange]
        loaded_at = self._markets_loaded_at.get(exchange)
        if loaded_at is None or time.monotonic() - loaded_at > self._markets_reload_seconds:
            # New listings only appear after a reload: ccxt caches markets forever.
            await client.load_markets(reload=loaded_at is not None)
            self._markets_loaded_at[exchange] = time.monotonic()
        return client.markets  # type: ignore[no-any-return]

    async def fetch_quotes(self, exchange: str, at: datetime) -> list[Quote]:
        """Every spot pair's last price, from one `fetch_tickers()` request."""
        markets = await self._markets(exchange)
        client = self._clients[exchange]
        try:
            tickers = await client.fetch_tickers()
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as error:
            wait = retry_after_seconds(client.last_response_headers)
            raise RateLimitedError(f"rate limited: {error}", wait) from error
        if not tickers:
            raise EmptyTickersError("the ticker response held no prices")
        return quotes_from_tickers(markets, tickers)

    async def _candle_ticks(
        self, exchange: str, symbol: str, start: datetime, end: datetime
    ) -> list[Tick]:
        client = self._clients[exchange]
        market = client.markets[symbol]
        since, until = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        candles = await client.fetch_ohlcv(
            symbol, "1m", since=since, params={"paginate": True, "until": until}
        )
        # A 1-minute candle's close is the price at its end: that is the cycle instant.
        return candle_ticks(exchange, market["base"], market["quote"], candles, since, until)

    async def history(
        self, start: datetime, end: datetime, exchanges: Iterable[str] | None = None
    ) -> AsyncIterator[HistoryBatch]:
        """Ticks from each spot market's 1-minute candles, a batch per market, of `exchanges`
        (all by default)."""
        names = self.exchanges if exchanges is None else tuple(exchanges)
        symbols = {
            exchange: [s for s, m in (await self._markets(exchange)).items() if m.get("spot")]
            for exchange in names
        }
        total = sum(len(names) for names in symbols.values())
        batches: asyncio.Queue[list[Tick]] = asyncio.Queue()

        async def backfill_exchange(exchange: str) -> None:
            for symbol in symbols[exchange]:
                ticks: list[Tick] = []
                try:
                    ticks = await self._candle_ticks(exchange, symbol, start, end)
                except Exception as error:  # ccxt leaks plain exceptions on bad bodies
                    log.warning("%s %s: no candles (%s)", exchange, symbol, describe(error))
                finally:
                    await batches.put(ticks)

        tasks = [asyncio.create_task(backfill_exchange(name)) for name in names]
        try:
            for done in range(1, total + 1):
                yield HistoryBatch(await batches.get(), done, total)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Close every exchange client's HTTP session."""
        await asyncio.gather(*(client.close() for client in self._clients.values()))
