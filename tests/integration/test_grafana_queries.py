"""Every provisioned Grafana query, expanded as Grafana would, on TimescaleDB with simulated data.

The queries only read, so one database per module is loaded once (25 hours of
three exchanges' ticks and collector runs) and every test queries it as a login
role in tracker_reader, the role Grafana's datasource connects with.
"""

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.postgres import types as pg_types
from psycopg.rows import TupleRow

from collector.report import CycleReport, ExchangeOutcome
from collector.sources.simulated import SimulatedSource
from collector.ticks import Tick
from collector.writer import QUERIES as COLLECTOR_QUERIES
from collector.writer import write_ticks
from tests.grafana_macros import GrafanaQuery, all_queries, expand
from tests.integration.background_jobs import (
    FAILING_ACTION_ERROR,
    POLICIES,
    add_failing_action,
    consecutive_failures,
    run_in_background,
)
from tests.integration.history import refresh_candles, refresh_rankings

QUERIES = all_queries()
HOURS_LOADED = 25  # a day on screen plus the hour the rolling window looks back
INTERVAL = timedelta(minutes=5)
VARIABLES = {"exchange": "kraken", "symbol": "btcusd", "quote": "USD"}
# Bitstamp's fetch fails in the cycle at minute 30 of every hour.
FAILING_EXCHANGE, FAILING_MINUTE = "bitstamp", 30
PAIRS = {"bitstamp": 4, "coinbase": 6, "kraken": 4}
EXCHANGES = tuple(PAIRS)

EXPECTED_COLUMNS = {
    "datatracker-overview/Pairs tracked": ["pairs", "active pairs", "exchanges"],
    "datatracker-overview/Since the last successful cycle": ["exchange", "since last success"],
    "datatracker-overview/Most volatile pairs, last 24 hours": [
        "exchange", "symbol", "rank", "stdv", "cv", "mean",
        "min", "max", "first", "last", "change_pct", "count",
    ],
    "datatracker-overview/Ticks per minute, per exchange": ["time", "metric", "ticks per minute"],
    "datatracker-overview/Collector health, per exchange": [
        "exchange", "last successful cycle", "last cycle", "cycles",
        "failed cycles", "ticks written", "quotes dropped", "last error", "set-aside cycles",
    ],
    "datatracker-overview/Failed cycles, per exchange": ["time", "metric", "failed cycles"],
    "datatracker-overview/TimescaleDB jobs": [
        "job", "state", "failures in a row", "last run", "last success", "next run", "last error",
    ],
    "datatracker-pair/Price: $symbol on $exchange": ["time", "price"],
    "datatracker-pair/Last 24 hours (${quote})": ["mean", "stdv", "min", "max"],
    "datatracker-pair/Change and volatility, 24 hours": ["change_pct", "cv"],
    "datatracker-pair/Volatility: rolling one-hour stdv / mean": [
        "time", "rolling 1 h stdv / mean",
    ],
    "datatracker-pair/exchange": ["exchange"],
    "datatracker-pair/symbol": ["symbol"],
    "datatracker-pair/quote": ["quote"],
    "datatracker-price-deviation/A": ["exchange", "symbol", "deviation"],
}  # fmt: skip
TIMESTAMPTZ = pg_types["timestamptz"].oid
NUMERIC = {pg_types[name].oid for name in ("int2", "int4", "int8", "float4", "float8", "numeric")}
TEXT = {pg_types[name].oid for name in ("text", "varchar")}


def failed(exchange: str, at: datetime) -> bool:
    """Whether the simulated collector's fetch of `exchange` failed in the cycle at `at`."""
    return exchange == FAILING_EXCHANGE and at.minute == FAILING_MINUTE


async def simulated_ticks(end: datetime) -> list[Tick]:
    """HOURS_LOADED hours of ticks to `end`: 4 pairs on bitstamp and kraken, 6 on coinbase."""
    sources = [
        SimulatedSource(["bitstamp", "kraken"], pairs_per_exchange=4, seed=7),
        SimulatedSource(["coinbase"], pairs_per_exchange=6, seed=8),
    ]
    return [
        tick
        for source in sources
        async for batch in source.history(end - timedelta(hours=HOURS_LOADED), end)
        for tick in batch.ticks
        if not failed(tick.exchange, tick.time)
    ]


async def record_simulated_runs(conn: psycopg.AsyncConnection, end: datetime) -> None:
    """One collector_runs row per exchange per minute, through the collector's own statement."""
    async with conn.pipeline():
        for minutes in range(HOURS_LOADED * 60):
            at = end - timedelta(minutes=minutes)
            outcomes = [
                ExchangeOutcome(name, error="RequestTimeout: simulated")
                if failed(name, at)
                else ExchangeOutcome(name, written=PAIRS[name])
                for name in EXCHANGES
            ]
            await conn.execute(COLLECTOR_QUERIES["record_runs"], CycleReport(at, outcomes).runs())


@pytest.fixture(scope="module")
def end() -> datetime:
    """The newest cycle loaded: this minute."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture(scope="module")
async def loaded_url(
    database_server: str, template_database: str, end: datetime
) -> AsyncIterator[str]:
    """Yield the conninfo of a database cloned from the template and loaded with simulated data."""
    name = f"datatracker_grafana_{secrets.token_hex(4)}"
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
    async with await psycopg.AsyncConnection.connect(database_server, autocommit=True) as admin:
        await admin.execute(create.format(sql.Identifier(name), sql.Identifier(template_database)))
    url = make_conninfo(database_server, dbname=name)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await write_ticks(conn, await simulated_ticks(end))
        await record_simulated_runs(conn, end)
    await refresh_candles(url, since=end - timedelta(hours=HOURS_LOADED))
    await refresh_rankings(url)
    yield url
    async with await psycopg.AsyncConnection.connect(database_server, autocommit=True) as admin:
        await admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
async def reader_url(loaded_url: str) -> AsyncIterator[str]:
    """Yield the conninfo of a new login role in tracker_reader, dropped afterwards."""
    role, password = f"test_grafana_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE tracker_reader")
    async with await psycopg.AsyncConnection.connect(loaded_url, autocommit=True) as admin:
        await admin.execute(create.format(sql.Identifier(role), password))
        yield make_conninfo(loaded_url, user=role, password=password)
        await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
async def reader(reader_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """Yield an autocommit connection as the tracker_reader login role."""
    async with await psycopg.AsyncConnection.connect(reader_url, autocommit=True) as conn:
        yield conn


async def run(
    conn: psycopg.AsyncConnection,
    query: GrafanaQuery,
    end: datetime,
    variables: dict[str, str] = VARIABLES,
) -> psycopg.AsyncCursor[TupleRow]:
    """Expand `query` for the range ending at `end` (its own range, or a day) and run it."""
    span = timedelta(seconds=query.relative_seconds or 24 * 3600)
    expanded = expand(query.sql, start=end - span, end=end, interval=INTERVAL, variables=variables)
    return await conn.execute(expanded.encode())  # trusted provisioning files, quoted values


def query_named(query_id: str) -> GrafanaQuery:
    """The provisioned query with this id (`<dashboard or rule uid>/<panel, variable or refId>`)."""
    (query,) = [query for query in QUERIES if query.id == query_id]
    return query


def column_names(cursor: psycopg.AsyncCursor[TupleRow]) -> list[str]:
    """The names of the columns a query returned."""
    return [column.name for column in cursor.description or []]


def test_every_query_has_expected_columns_listed() -> None:
    """Expected columns are listed for exactly the provisioned queries: a new one needs an entry."""
    assert sorted(EXPECTED_COLUMNS) == sorted(query.id for query in QUERIES)


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
async def test_every_query_runs_as_the_reader_and_returns_its_columns(
    reader: psycopg.AsyncConnection, end: datetime, query: GrafanaQuery
) -> None:
    """Expanded, each panel, variable and alert query runs as tracker_reader and returns rows."""
    cursor = await run(reader, query, end)

    assert EXPECTED_COLUMNS[query.id] == column_names(cursor)
    assert await cursor.fetchall()


@pytest.mark.parametrize(
    "query", [q for q in QUERIES if q.format == "time_series"], ids=lambda q: q.id
)
async def test_time_series_return_time_then_an_optional_metric_and_numbers(
    reader: psycopg.AsyncConnection, end: datetime, query: GrafanaQuery
) -> None:
    """A time series query returns `time` (timestamptz) first, sorted, then `metric` or numbers."""
    cursor = await run(reader, query, end)
    rows = await cursor.fetchall()
    description = cursor.description or []

    assert ("time", TIMESTAMPTZ) == (description[0].name, description[0].type_code)
    assert [] == [c.name for c in description[1:] if c.type_code not in NUMERIC | TEXT]
    assert [] == [c.name for c in description[1:] if c.type_code in TEXT and c.name != "metric"]
    assert sorted(row[0] for row in rows) == [row[0] for row in rows]


@pytest.mark.parametrize("query", [q for q in QUERIES if q.kind == "stat"], ids=lambda q: q.id)
async def test_stat_panels_get_numbers(
    reader: psycopg.AsyncConnection, end: datetime, query: GrafanaQuery
) -> None:
    """A stat panel's numeric columns hold a number in every row; other columns only name rows."""
    cursor = await run(reader, query, end)
    rows = await cursor.fetchall()
    numeric = [i for i, c in enumerate(cursor.description or []) if c.type_code in NUMERIC]

    assert numeric
    assert [] == [row for row in rows if any(row[i] is None for i in numeric)]


async def test_the_exchange_variable_lists_every_exchange(
    reader: psycopg.AsyncConnection, end: datetime
) -> None:
    """The exchange variable offers each exchange with stored markets, once, sorted."""
    cursor = await run(reader, query_named("datatracker-pair/exchange"), end)

    assert [(name,) for name in EXCHANGES] == await cursor.fetchall()


@pytest.mark.parametrize(("exchange", "count"), [("kraken", 4), ("coinbase", 6)])
async def test_the_symbol_variable_lists_the_chosen_exchanges_symbols(
    reader: psycopg.AsyncConnection, end: datetime, exchange: str, count: int
) -> None:
    """The symbol variable offers exactly the symbols of the exchange chosen first."""
    expected = sorted(
        pair.symbol for pair in SimulatedSource([], pairs_per_exchange=count, seed=0).pairs
    )
    variables = {**VARIABLES, "exchange": exchange}

    cursor = await run(reader, query_named("datatracker-pair/symbol"), end, variables)

    assert [(symbol,) for symbol in expected] == await cursor.fetchall()


async def test_a_crafted_variable_value_stays_a_literal(
    reader: psycopg.AsyncConnection, end: datetime
) -> None:
    """An exchange value carrying SQL matches no market instead of widening the query."""
    variables = {**VARIABLES, "exchange": "kraken' OR 'a' = 'a"}

    cursor = await run(reader, query_named("datatracker-pair/symbol"), end, variables)

    assert [] == await cursor.fetchall()


async def test_the_ranking_lists_each_pair_once_by_stdv_over_mean(
    reader: psycopg.AsyncConnection, end: datetime
) -> None:
    """The ranking lists every pair once, rank 1 the highest stdv / mean, ranks 1 to n."""
    cursor = await run(
        reader, query_named("datatracker-overview/Most volatile pairs, last 24 hours"), end
    )
    rows = [dict(zip(column_names(cursor), row, strict=True)) for row in await cursor.fetchall()]

    assert list(range(1, 15)) == [row["rank"] for row in rows]
    assert sorted((row["cv"] for row in rows), reverse=True) == [row["cv"] for row in rows]
    assert 14 == len({(row["exchange"], row["symbol"]) for row in rows})


async def test_collector_health_shows_last_success_and_failures_per_exchange(
    reader: psycopg.AsyncConnection, end: datetime
) -> None:
    """Per exchange: the newest successful cycle and the failed cycles of the day on screen."""
    day = [end - timedelta(minutes=m) for m in range(24 * 60 + 1)]  # $__timeFilter is inclusive
    expected = [
        (name, max(at for at in day if not failed(name, at)), sum(failed(name, at) for at in day))
        for name in EXCHANGES
    ]

    cursor = await run(
        reader, query_named("datatracker-overview/Collector health, per exchange"), end
    )

    assert expected == [(row[0], row[1], row[4]) for row in await cursor.fetchall()]


@pytest.mark.edition("timescale")
async def test_the_jobs_panel_lists_every_policy(
    reader: psycopg.AsyncConnection, end: datetime
) -> None:
    """On the Timescale-License edition the jobs panel lists each of the six policies once."""
    cursor = await run(reader, query_named("datatracker-overview/TimescaleDB jobs"), end)

    assert POLICIES == sorted(
        row[0] for row in await cursor.fetchall() if row[0].startswith("policy_")
    )


@pytest.mark.edition("timescale")
async def test_the_jobs_panel_shows_a_failing_job_with_its_error(
    loaded_url: str, reader: psycopg.AsyncConnection, end: datetime
) -> None:
    """A job that really failed (run by TimescaleDB's scheduler) shows in the jobs panel, as
    the readers' role reads it: failing, its failures in a row, its error."""
    job_id = await add_failing_action(loaded_url)
    await run_in_background(loaded_url, job_id)
    failures = await consecutive_failures(loaded_url, job_id)

    cursor = await run(reader, query_named("datatracker-overview/TimescaleDB jobs"), end)
    rows = await cursor.fetchall()

    ((state, shown, last_run, last_success, _next_run, error),) = [
        row[1:] for row in rows if row[0] == f"public.failing_action:{job_id}"
    ]
    assert ("failing", failures, None, FAILING_ACTION_ERROR) == (state, shown, last_success, error)
    assert last_run is not None


@pytest.mark.edition("apache")
async def test_the_jobs_panel_says_the_apache_edition_has_none(
    reader: psycopg.AsyncConnection, end: datetime
) -> None:
    """On the Apache edition the jobs panel shows one row saying there are no jobs."""
    cursor = await run(reader, query_named("datatracker-overview/TimescaleDB jobs"), end)

    ((job, state, failures, *_),) = await cursor.fetchall()
    assert (state, failures) == ("ok", 0)
    assert job.startswith("none: the Apache edition has no TimescaleDB jobs")


async def test_the_price_alert_has_one_non_negative_deviation_per_pair(
    reader: psycopg.AsyncConnection, end: datetime
) -> None:
    """The alert query yields one deviation (in standard deviations, >= 0) per pair."""
    cursor = await run(reader, query_named("datatracker-price-deviation/A"), end)
    rows = await cursor.fetchall()

    assert 14 == len({(exchange, symbol) for exchange, symbol, _ in rows})
    assert [] == [row for row in rows if not isinstance(row[2], float) or row[2] < 0]


@pytest.mark.parametrize("table", ["markets", "ticks", "collector_runs"])
async def test_the_reader_cannot_insert(reader: psycopg.AsyncConnection, table: str) -> None:
    """tracker_reader, Grafana's role, is refused an insert into every table."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await reader.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(table)))


async def test_the_reader_cannot_create_tables(reader: psycopg.AsyncConnection) -> None:
    """tracker_reader cannot create a table in the public schema either."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await reader.execute("CREATE TABLE grafana_was_here (id integer)")
