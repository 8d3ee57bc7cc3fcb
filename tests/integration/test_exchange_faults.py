"""Exchange faults through the fake exchange server: each exchange's trouble stays its own."""

import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from collector.cycle import run_cycle
from collector.sources.live import LiveSource
from collector.store import Store
from tests.fake_exchange import EXCHANGES, FakeExchangeServer, FakeMarket, Fault

AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
# Pairs listed by FakeExchangeServer.with_default_markets().
LISTED = {"binance": 5, "coinbase": 5, "kraken": 6, "bitstamp": 4, "okx": 5}


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False
    ) as opened:
        yield opened


@pytest.fixture
async def server() -> AsyncIterator[FakeExchangeServer]:
    async with FakeExchangeServer.with_default_markets() as fake:
        yield fake


def live_source(base_url: str, *, markets_reload_seconds: float = 3600) -> LiveSource:
    source = LiveSource(
        EXCHANGES,
        timeout_seconds=5,
        markets_reload_seconds=markets_reload_seconds,
        base_url=base_url,
        rate_limit=False,
    )
    for client in source._clients.values():
        client.timeout_on_exit = 0  # ccxt sleeps this long in close()
    return source


@pytest.fixture
async def source(server: FakeExchangeServer) -> AsyncIterator[LiveSource]:
    live = live_source(server.base_url)
    for exchange in EXCHANGES:  # markets first: coinbase serves markets and tickers alike
        await live._markets(exchange)
    yield live
    await live.close()


async def runs(conn: psycopg.AsyncConnection) -> dict[str, tuple[bool, int, int]]:
    cursor = await conn.execute("SELECT exchange, ok, written, dropped FROM collector_runs")
    return {
        exchange: (ok, written, dropped)
        for exchange, ok, written, dropped in await cursor.fetchall()
    }


def others_fine(outcome: dict[str, tuple[bool, int, int]], broken: str) -> bool:
    return all(outcome[name] == (True, LISTED[name], 0) for name in EXCHANGES if name != broken)


@pytest.mark.parametrize(
    ("exchange", "fault"),
    [
        ("binance", Fault(status=500, body="Internal Server Error")),
        ("okx", Fault(status=503, body="<html><body>down for maintenance</body></html>")),
        ("kraken", Fault(status=429, body='{"error": ["EAPI:Rate limit exceeded"]}')),
        ("binance", Fault(status=429, body="{}", headers={"Retry-After": "60"})),
        ("bitstamp", Fault(body='[{"pair": "BTC/USD", "last": "97')),
        ("binance", Fault(body="<html><body>Cloudflare error</body></html>")),
        ("kraken", Fault(body='{"error": ["EService:Unavailable"]}')),
        ("okx", Fault(body="not json at all")),
        ("coinbase", Fault(delay_seconds=30)),
    ],
    ids=[
        "5xx",
        "503 html",
        "kraken rate limit",
        "429 retry-after too long",
        "truncated json",
        "html with 200",
        "kraken unavailable",
        "garbage",
        "timeout",
    ],
)
async def test_a_broken_exchange_fails_alone_and_is_recorded(
    server: FakeExchangeServer,
    source: LiveSource,
    pool: AsyncConnectionPool,
    conn: psycopg.AsyncConnection,
    exchange: str,
    fault: Fault,
) -> None:
    """The broken exchange is recorded as failed; every other exchange is written in full."""
    server.faults[exchange] = fault
    started = time.monotonic()

    report = await run_cycle(source, Store(pool), AT, timeout_seconds=3)

    assert [exchange] == report.failed
    outcome = await runs(conn)
    assert (False, 0, 0) == outcome[exchange]
    assert others_fine(outcome, exchange)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("retry_after", [None, "1"], ids=["backoff", "retry-after"])
async def test_a_passing_rate_limit_is_retried_within_the_cycle(
    server: FakeExchangeServer,
    source: LiveSource,
    pool: AsyncConnectionPool,
    retry_after: str | None,
) -> None:
    """One 429 (with or without Retry-After) costs a retry, not the exchange's ticks."""
    headers = {"Retry-After": retry_after} if retry_after else {}
    server.faults["binance"] = Fault(status=429, body="{}", headers=headers, times=1)

    report = await run_cycle(source, Store(pool), AT, timeout_seconds=5)

    binance = next(o for o in report.outcomes if o.exchange == "binance")
    assert ([], 2, 5) == (report.failed, binance.attempts, binance.written)
    if retry_after:
        assert binance.fetch_seconds >= 1


async def test_unusable_prices_are_dropped_and_counted(
    server: FakeExchangeServer,
    source: LiveSource,
    pool: AsyncConnectionPool,
    conn: psycopg.AsyncConnection,
) -> None:
    """Zero, negative, NaN, absurd and missing prices are dropped; the sound ones are written."""
    server.markets["kraken"] = [
        FakeMarket("BTC", "USD", 96950.5),
        FakeMarket("ETH", "USD", 0),
        FakeMarket("SOL", "USD", -3),
        FakeMarket("ADA", "USD", "NaN"),
        FakeMarket("DOT", "USD", 1e300),
        FakeMarket("XRP", "USD", None),
    ]
    await source._markets("kraken")
    source._markets_loaded_at.clear()

    await run_cycle(source, Store(pool), AT, timeout_seconds=5)

    ok, written, dropped = (await runs(conn))["kraken"]
    assert (True, 1) == (ok, written)
    assert dropped > 0  # ccxt itself already leaves some of them out
    cursor = await conn.execute("SELECT symbol FROM prices WHERE exchange = 'kraken'")
    assert [("btcusd",)] == await cursor.fetchall()


async def test_a_pair_listed_twice_is_written_once(
    server: FakeExchangeServer,
    source: LiveSource,
    pool: AsyncConnectionPool,
    conn: psycopg.AsyncConnection,
) -> None:
    """A response naming one pair twice yields one tick for it."""
    server.markets["bitstamp"].append(FakeMarket("BTC", "USD", 97011.0))

    await run_cycle(source, Store(pool), AT, timeout_seconds=5)

    cursor = await conn.execute(
        "SELECT count(*) FROM prices WHERE exchange = 'bitstamp' AND symbol = 'btcusd'"
    )
    assert (1,) == await cursor.fetchone()


async def test_listings_that_change_between_cycles_are_followed(
    server: FakeExchangeServer, pool: AsyncConnectionPool, conn: psycopg.AsyncConnection
) -> None:
    """A new listing appears and a delisted pair stops, once the markets are reloaded."""
    source = live_source(server.base_url, markets_reload_seconds=0)
    try:
        await run_cycle(source, Store(pool), AT, timeout_seconds=5)
        server.markets["okx"] = [m for m in server.markets["okx"] if m.base != "SOL"]
        server.markets["okx"].append(FakeMarket("DOGE", "USDT", 0.3217))
        await run_cycle(source, Store(pool), AT + timedelta(minutes=1), timeout_seconds=5)
    finally:
        await source.close()

    cursor = await conn.execute(
        "SELECT symbol, count(*) FROM prices WHERE exchange = 'okx'"
        " AND symbol IN ('solusdt', 'dogeusdt') GROUP BY symbol ORDER BY symbol"
    )
    assert [("dogeusdt", 1), ("solusdt", 1)] == await cursor.fetchall()


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on: bound for a moment, then let go."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("base_url", "cause"),
    [
        # .invalid never resolves (RFC 6761): what a collector without network or DNS meets.
        ("http://exchange.invalid", "cannot resolve host exchange.invalid (no network or DNS)"),
        (None, "connection refused by 127.0.0.1:{port} (nothing listening)"),
    ],
    ids=["unresolvable host", "connection refused"],
)
async def test_unreachable_exchanges_fail_quickly_naming_the_cause(
    pool: AsyncConnectionPool,
    conn: psycopg.AsyncConnection,
    caplog: pytest.LogCaptureFixture,
    base_url: str | None,
    cause: str,
) -> None:
    """Each exchange fails on its own, the cycle still ends, and the stored error and the log
    line say why (not only ccxt's `ExchangeNotAvailable: binance GET …`)."""
    port = closed_port()
    source = live_source(base_url or f"http://127.0.0.1:{port}")
    expected = f"ExchangeNotAvailable: {cause.format(port=port)}"
    started = time.monotonic()
    try:
        report = await run_cycle(source, Store(pool), AT, timeout_seconds=5)
    finally:
        await source.close()

    assert sorted(EXCHANGES) == sorted(report.failed)
    assert time.monotonic() - started < 10
    cursor = await conn.execute("SELECT exchange, ok, error FROM collector_runs")
    assert {(name, False, expected) for name in EXCHANGES} == set(await cursor.fetchall())
    lines = [r.getMessage() for r in caplog.records if r.name == "collector"]
    for name in EXCHANGES:
        assert any(line.startswith(f"{name}: failed") and line.endswith(expected) for line in lines)


async def test_an_error_holding_a_nul_byte_is_recorded_without_it(
    server: FakeExchangeServer,
    source: LiveSource,
    pool: AsyncConnectionPool,
    conn: psycopg.AsyncConnection,
) -> None:
    """An exchange whose error message holds a NUL fails alone; its error is stored, NUL-free."""
    server.faults["okx"] = Fault(status=500, body="Internal\x00Server Error")

    report = await run_cycle(source, Store(pool), AT, timeout_seconds=3)

    assert (["okx"], True) == (report.failed, report.stored)
    cursor = await conn.execute("SELECT error FROM collector_runs WHERE exchange = 'okx'")
    ((error,),) = await cursor.fetchall()
    assert "InternalServer Error" in error
    assert others_fine(await runs(conn), "okx")


async def test_microsecond_timestamps_give_null_exchange_times_not_a_lost_exchange(
    server: FakeExchangeServer,
    source: LiveSource,
    pool: AsyncConnectionPool,
    conn: psycopg.AsyncConnection,
) -> None:
    """Ticker times in microseconds ("year 57971") are stored as NULL; every pair is written."""
    server.clock = lambda: time.time() * 1000  # the fake's milliseconds become microseconds

    report = await run_cycle(source, Store(pool), AT, timeout_seconds=5)

    assert ([], sum(LISTED.values())) == (report.failed, report.written)
    cursor = await conn.execute("SELECT count(*) FROM ticks WHERE exchange_time IS NOT NULL")
    assert (0,) == await cursor.fetchone()
