"""A deterministic random walk over realistic pairs, for installations without network access.

Each pair (say BTC/USD) follows one geometric random walk shared by every exchange
that lists it; each exchange adds a small fixed premium and a little noise of its own,
as real exchanges do. A weak pull towards the pair's starting level keeps prices plausible over
months. The walk is seeded by the cycle's instant, so the same seed, instant and state
give the same prices.
"""

import asyncio
import math
import random
from array import array
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.sources import GRID_STEP, HistoryBatch, Market, TickGrid
from collector.ticks import Quote, Tick
from datatracker.symbols import normalise_symbol

# Base assets with rough USD price levels (late 2025) and per-minute volatility.
ASSETS: tuple[tuple[str, float, float], ...] = (
    ("BTC", 97_000.0, 0.0008),
    ("ETH", 3_400.0, 0.0010),
    ("SOL", 180.0, 0.0015),
    ("BNB", 650.0, 0.0010),
    ("XRP", 2.3, 0.0015),
    ("ADA", 0.9, 0.0018),
    ("DOGE", 0.32, 0.0022),
    ("AVAX", 35.0, 0.0018),
    ("DOT", 6.5, 0.0018),
    ("LINK", 20.0, 0.0017),
    ("LTC", 100.0, 0.0014),
    ("UNI", 12.0, 0.0018),
    ("ATOM", 7.0, 0.0018),
    ("1INCH", 0.35, 0.0022),
    ("TRX", 0.25, 0.0012),
    ("XLM", 0.4, 0.0016),
    ("AAVE", 300.0, 0.0018),
    ("NEAR", 5.0, 0.0020),
    ("SHIB", 0.000022, 0.0025),
    ("PEPE", 0.000012, 0.0030),
    ("BONK", 0.00003, 0.0032),
)
# Quote currencies with their value in USD.
QUOTES: tuple[tuple[str, float], ...] = (
    ("USD", 1.0),
    ("USDT", 1.0),
    ("USDC", 1.0),
    ("EUR", 1.05),
    ("BTC", 97_000.0),
)
STEP = GRID_STEP
# Pull towards the starting level: about a week for a deviation to halve.
REVERSION_PER_MINUTE = math.log(2) / (7 * 24 * 60)
EXCHANGE_NOISE = 0.0002
# Exchanges quote a pair in steps of a fixed size (its tick size), which at the pair's usual
# price leaves a handful of significant digits: BTC/USD in tenths of a dollar, SHIB/USDT in
# steps of 1e-10. The walk's prices are rounded the same way, to this many at the start level.
SIGNIFICANT_DIGITS = 6


@dataclass(frozen=True, slots=True)
class Pair:
    """A simulated currency pair: its starting price and per-minute volatility."""

    base: str
    quote: str
    price: float
    volatility: float

    @property
    def symbol(self) -> str:
        return normalise_symbol(self.base, self.quote)


def quote_decimals(price: float) -> int:
    """The decimals of a pair quoted around `price`: SIGNIFICANT_DIGITS at that price."""
    return SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(price))


def catalogue(count: int) -> list[Pair]:
    """The first `count` pairs: real assets against each quote, then synthetic tokens."""
    pairs = [
        Pair(base, quote, usd / quote_usd, vol)
        for quote, quote_usd in QUOTES
        for base, usd, vol in ASSETS
        if base != quote
    ]
    rng = random.Random(0)  # synthetic tokens are the same everywhere
    token = 0
    while len(pairs) < count:
        token += 1
        pairs.append(
            Pair(f"SIM{token:04d}", "USDT", 10 ** rng.uniform(-6, 3), rng.uniform(0.001, 0.004))
        )
    return pairs[:count]


class SimulatedSource:
    """A seeded random walk over `pairs_per_exchange` pairs on each configured exchange."""

    def __init__(self, exchanges: Iterable[str], *, pairs_per_exchange: int, seed: int) -> None:
        self.exchanges = tuple(exchanges)
        self.expected_errors: tuple[type[Exception], ...] = ()
        self.pairs = catalogue(pairs_per_exchange)
        self._seed = seed
        # The walk's state as lists in catalogue order (a grid's columns are built from them
        # whole); the random draws come in the same order as ever, so a seed walks one path.
        self._index = {pair.symbol: i for i, pair in enumerate(self.pairs)}
        premium = random.Random(f"{seed}:premium")
        self._premium = {
            exchange: [premium.gauss(0, 0.001) for _ in self.pairs] for exchange in self.exchanges
        }
        self._home = [math.log(pair.price) for pair in self.pairs]
        self._volatility = [pair.volatility for pair in self.pairs]
        self._decimals = [quote_decimals(pair.price) for pair in self.pairs]
        self._level = list(self._home)
        self._noise = {exchange: [0.0] * len(self.pairs) for exchange in self.exchanges}
        self._at: datetime | None = None

    def resume(self, prices: Mapping[tuple[str, str], float]) -> None:
        """Continue the walk from stored prices (exchange, symbol) → price, e.g. after a restart."""
        levels: dict[int, list[float]] = {}
        for (exchange, symbol), price in prices.items():
            index = self._index.get(symbol)
            if exchange in self._premium and index is not None and price > 0:
                logs = levels.setdefault(index, [])
                logs.append(math.log(price) - self._premium[exchange][index])
        for index, logs in levels.items():
            self._level[index] = sum(logs) / len(logs)

    def advance(self, at: datetime) -> None:
        """Move every price to instant `at`; a gap of n minutes is one step of n minutes."""
        if self._at is not None and at <= self._at:
            return
        minutes = 1.0 if self._at is None else (at - self._at) / STEP
        self._at = at
        gauss = random.Random(f"{self._seed}:{at.isoformat()}").gauss
        keep = math.exp(-REVERSION_PER_MINUTE * minutes)
        spread = math.sqrt(minutes)
        level, home = self._level, self._home
        noises = [self._noise[exchange] for exchange in self.exchanges]
        for index, volatility in enumerate(self._volatility):
            shared = gauss(0, volatility * spread)
            level[index] = home[index] + (level[index] - home[index]) * keep + shared
            for noise in noises:
                noise[index] = gauss(0, EXCHANGE_NOISE)

    def price(self, exchange: str, symbol: str) -> float:
        """The current price of one pair on one exchange."""
        index = self._index[symbol]
        premium, noise = self._premium[exchange][index], self._noise[exchange][index]
        return round(math.exp(self._level[index] + premium + noise), self._decimals[index])

    def prices(self, exchange: str) -> list[float]:
        """Every pair's current price on one exchange, in catalogue order."""
        exp = math.exp
        return [
            round(exp(level + premium + noise), decimals)
            for level, premium, noise, decimals in zip(
                self._level,
                self._premium[exchange],
                self._noise[exchange],
                self._decimals,
                strict=True,
            )
        ]

    def quotes(self, exchange: str) -> list[Quote]:
        """Every pair's current price on one exchange."""
        return [
            Quote(pair.base, pair.quote, price)
            for pair, price in zip(self.pairs, self.prices(exchange), strict=True)
        ]

    async def fetch_quotes(self, exchange: str, at: datetime) -> list[Quote]:
        """The walk's prices at `at` (the first exchange asked for a new instant moves them)."""
        self.advance(at)
        return self.quotes(exchange)

    def markets(self, exchanges: Iterable[str] | None = None) -> list[Market]:
        """The markets of `exchanges` (all by default): each exchange's pairs in catalogue
        order, the order of a grid's columns."""
        return [
            Market(exchange, pair.symbol, pair.base, pair.quote)
            for exchange in self._names(exchanges)
            for pair in self.pairs
        ]

    async def grids(
        self, start: datetime, end: datetime, exchanges: Iterable[str] | None, *, width: timedelta
    ) -> AsyncIterator[TickGrid]:
        """The walk minute by minute from `start` (exclusive) to `end`, of `exchanges` (all
        when None), a grid per `width` of time since the Unix epoch."""
        names = self._names(exchanges)
        markets = self.markets(names)
        times: list[datetime] = []
        prices: array[float] = array("d")
        window = None
        for step in range(1, int((end - start) / STEP) + 1):
            at = start + step * STEP
            if times and at.timestamp() // width.total_seconds() != window:
                yield TickGrid(times, markets, prices)
                times, prices = [], array("d")
            window = at.timestamp() // width.total_seconds()
            self.advance(at)
            times.append(at)
            for exchange in names:
                prices.extend(self.prices(exchange))
            # A minute at a time, so that a write under way (the previous grid's) goes on.
            await asyncio.sleep(0)
        if times:
            yield TickGrid(times, markets, prices)

    async def history(
        self, start: datetime, end: datetime, exchanges: Iterable[str] | None = None
    ) -> AsyncIterator[HistoryBatch]:
        """The walk minute by minute from `start` (exclusive) to `end`, a batch per minute, of
        `exchanges` (all by default)."""
        total = int((end - start) / STEP)
        done = 0
        async for grid in self.grids(start, end, exchanges, width=STEP):
            done += 1
            ticks = [
                Tick(grid.times[0], market.exchange, market.symbol, market.base, market.quote, p)
                for market, p in zip(grid.markets, grid.prices, strict=True)
            ]
            yield HistoryBatch(ticks, done, total)

    def _names(self, exchanges: Iterable[str] | None) -> tuple[str, ...]:
        return self.exchanges if exchanges is None else tuple(exchanges)

    async def close(self) -> None:
        """Nothing to release."""
