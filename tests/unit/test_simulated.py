"""The simulated source: deterministic, realistic, and moving."""

from datetime import UTC, datetime, timedelta

from collector.sources.simulated import SimulatedSource, catalogue, quote_decimals

AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


async def prices_at(source: SimulatedSource, exchange: str, at: datetime) -> dict[str, float]:
    return {f"{q.base}/{q.quote}": float(q.price) for q in await source.fetch_quotes(exchange, at)}  # type: ignore[arg-type]


async def test_same_seed_gives_same_prices() -> None:
    """Two sources with one seed walk the same path."""
    first = SimulatedSource(["kraken"], pairs_per_exchange=20, seed=7)
    second = SimulatedSource(["kraken"], pairs_per_exchange=20, seed=7)
    for minute in range(3):
        at = AT + timedelta(minutes=minute)
        assert await prices_at(first, "kraken", at) == await prices_at(second, "kraken", at)


async def test_prices_move_but_stay_near_their_level() -> None:
    """A minute later every price has moved, by a plausible amount."""
    source = SimulatedSource(["kraken"], pairs_per_exchange=30, seed=1)
    before = await prices_at(source, "kraken", AT)
    after = await prices_at(source, "kraken", AT + timedelta(minutes=1))
    assert before.keys() == after.keys()
    assert all(before[pair] != after[pair] for pair in before)
    assert all(0.95 < after[pair] / before[pair] < 1.05 for pair in before)


async def test_prices_come_in_steps_of_the_pairs_tick_size() -> None:
    """As on an exchange, each pair's prices are whole steps of a fixed size: six
    significant digits at its usual price (BTC/USD in tenths, SHIB/USDT in 1e-10)."""
    source = SimulatedSource(["kraken"], pairs_per_exchange=150, seed=2)
    for minute in range(3):
        prices = await prices_at(source, "kraken", AT + timedelta(minutes=minute))
        for pair in source.pairs:
            price = prices[f"{pair.base}/{pair.quote}"]
            decimals = quote_decimals(pair.price)
            assert price == round(price, decimals)
            assert len(f"{price:.{max(decimals, 0)}f}".replace(".", "").lstrip("0")) <= 7
    assert quote_decimals(97_000.0) == 1
    assert quote_decimals(0.000022) == 10


async def test_exchanges_quote_one_pair_alike() -> None:
    """BTC/USD costs about the same on every simulated exchange."""
    source = SimulatedSource(["binance", "kraken"], pairs_per_exchange=5, seed=3)
    binance = await prices_at(source, "binance", AT)
    kraken = await prices_at(source, "kraken", AT)
    assert abs(binance["BTC/USD"] / kraken["BTC/USD"] - 1) < 0.01


def test_catalogue_spans_bitcoin_to_sub_cent_coins_and_grows_past_real_names() -> None:
    """Pairs range from BTC's level to fractions of a cent; more pairs than names are synthetic."""
    pairs = catalogue(500)
    prices = [pair.price for pair in pairs]
    assert 500 == len({(pair.base, pair.quote) for pair in pairs})
    assert max(prices) > 50_000
    assert min(prices) < 0.001


async def test_resume_continues_from_stored_prices() -> None:
    """After resume, the next price is a step from the stored one, not from the start level."""
    source = SimulatedSource(["kraken"], pairs_per_exchange=1, seed=1)
    source.resume({("kraken", "btcusd"): 50_000.0})
    price = (await prices_at(source, "kraken", AT))["BTC/USD"]
    assert 0.98 < price / 50_000.0 < 1.02


async def test_grids_hold_the_ticks_of_the_history() -> None:
    """A source's grids, whatever their width, hold the ticks its history gives minute by
    minute, for the exchanges asked."""
    exchanges = ["kraken", "binance", "okx"]
    history = SimulatedSource(exchanges, pairs_per_exchange=6, seed=4)
    expected = [
        (t.time, t.exchange, t.symbol, t.base, t.quote, t.price)
        async for batch in history.history(AT, AT + timedelta(minutes=95), ["okx", "kraken"])
        for t in batch.ticks
    ]
    source = SimulatedSource(exchanges, pairs_per_exchange=6, seed=4)
    grids = [
        grid
        async for grid in source.grids(
            AT, AT + timedelta(minutes=95), ["okx", "kraken"], width=timedelta(minutes=30)
        )
    ]
    ticks = [
        (at, *market, grid.prices[i * len(grid.markets) + m])
        for grid in grids
        for i, at in enumerate(grid.times)
        for m, market in enumerate(grid.markets)
    ]
    assert expected == ticks
    assert [29, 30, 30, 6] == [len(grid.times) for grid in grids]  # by the clock's half hours
    assert source.markets(["okx", "kraken"]) == grids[0].markets
