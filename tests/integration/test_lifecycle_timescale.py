"""The Timescale License path on PGlite's TimescaleDB: policies, aggregates, retention, compression.

Every test shares one licensed database (see conftest.py), and the API holds its only
connection while it runs, so direct SQL happens only while no API is served.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from collector.ticks import Tick
from collector.writer import write_ticks
from tests.api_server import serve_api
from tests.integration.comparing import differences
from tests.integration.history import (
    ANCHOR,
    EXCHANGES,
    PAIRS_PER_EXCHANGE,
    refresh_rankings,
    settings_for,
)

JOBS = """
    SELECT proc_name, hypertable_name, config - 'hypertable_id' - 'mat_hypertable_id'
    FROM timescaledb_information.jobs
    WHERE hypertable_name IS NOT NULL
    ORDER BY hypertable_name, proc_name"""


async def fetch(url: str, query: str, params: object = None) -> list[tuple[Any, ...]]:
    """The rows of one query, on a connection closed right after."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(query, params)  # type: ignore[arg-type]  # test constants
        return await cursor.fetchall()


async def answers(api: httpx.AsyncClient) -> dict[str, Any]:
    """The API's answers to every read over the simulated history, keyed by path."""
    paths = ["/rankings", "/rankings?by=stdv", "/rankings?exchange=binance&limit=3&offset=1"]
    ranked = (await api.get("/rankings")).json()["rankings"]
    end = ANCHOR.strftime("%Y-%m-%dT%H:%M:%SZ")
    start = (ANCHOR - timedelta(hours=22)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for pair in ranked:
        base = f"/prices/{pair['exchange']}/{pair['symbol']}"
        candles = f"{base}/candles?end={end}&interval="
        paths += [base, f"{candles}5m", f"{candles}15m", f"{candles}1h&start={start}"]
        paths += [f"{candles}4h", f"{candles}1d"]
    result = {}
    for path in paths:
        response = await api.get(path)
        assert 200 == response.status_code, path
        result[path] = response.json()
        # When the stored ranking was refreshed differs between databases and runs.
        if path.startswith("/rankings"):
            assert result[path].pop("as_of") is not None, path
    return result


async def test_init_creates_the_policies_and_continuous_aggregates(
    licensed_database_url: str,
) -> None:
    """On the licensed edition init.sql adds retention, compression and refresh policies."""
    expected = [
        ("policy_refresh_continuous_aggregate", "candles_1h",
         {"start_offset": "03:00:00", "end_offset": "01:00:00"}),
        ("policy_retention", "candles_1h", {"drop_after": "730 days"}),
        ("policy_refresh_continuous_aggregate", "candles_5m",
         {"start_offset": "01:00:00", "end_offset": "00:05:00"}),
        ("policy_retention", "candles_5m", {"drop_after": "90 days"}),
        ("policy_compression", "ticks", {"compress_after": "1 day"}),
        ("policy_retention", "ticks", {"drop_after": "7 days"}),
    ]  # fmt: skip

    assert expected == await fetch(licensed_database_url, JOBS)


async def test_candles_are_real_time_continuous_aggregates(licensed_database_url: str) -> None:
    """candles_5m and candles_1h are continuous aggregates over ticks with real-time aggregation."""
    rows = await fetch(
        licensed_database_url,
        "SELECT view_name, hypertable_name, materialized_only"
        " FROM timescaledb_information.continuous_aggregates ORDER BY view_name",
    )

    assert [("candles_1h", "ticks", False), ("candles_5m", "ticks", False)] == rows


async def test_applying_the_schema_with_other_intervals_replaces_the_policies(
    licensed_database_url: str,
) -> None:
    """initdb's settings replace a policy whose interval changed and keep the others."""
    from datatracker.schema import apply_schema

    before = await fetch(licensed_database_url, JOBS)
    apply_schema(licensed_database_url, {"datatracker.raw_retention": "10 days"})
    changed = await fetch(licensed_database_url, JOBS)
    apply_schema(licensed_database_url)

    assert ("policy_retention", "ticks", {"drop_after": "10 days"}) in changed
    assert [job for job in before if job[1:] != ("ticks", {"drop_after": "7 days"})] == [
        job for job in changed if job[1:] != ("ticks", {"drop_after": "10 days"})
    ]
    assert before == await fetch(licensed_database_url, JOBS)


async def test_the_retention_job_drops_exactly_the_chunks_past_the_horizon(
    licensed_history: str,
) -> None:
    """Running the ticks' retention policy drops the chunks older than 7 days and no other."""
    url, now = licensed_history, datetime.now(UTC)
    old = [
        Tick(now - timedelta(days=days), "retention", "oldusd", "OLD", "USD", 1.0 + days)
        for days in (9.5, 8.5, 7.5, 6.5, 5.5)
    ]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await write_ticks(conn, old, copy=False)  # PGlite cannot COPY FROM STDIN
    chunks = "SELECT show_chunks('ticks')::text ORDER BY 1"
    before = await fetch(url, chunks)
    expired = await fetch(
        url,
        "SELECT show_chunks('ticks', older_than => now() - '7 days'::interval)::text ORDER BY 1",
    )
    [(job_id,)] = await fetch(
        url,
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_retention' AND hypertable_name = 'ticks'",
    )

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CALL run_job(%s)", [job_id])

    assert 3 <= len(expired)
    assert [chunk for chunk in before if chunk not in expired] == await fetch(url, chunks)
    assert [(6.5,), (7.5,)] == await fetch(
        url,
        "SELECT price FROM prices WHERE exchange = 'retention' ORDER BY price",
    )


async def test_compressed_chunks_answer_every_query_as_before(licensed_history: str) -> None:
    """After the compression job and compressing every chunk, the API answers the same, and so
    does a ranking refreshed from the compressed chunks."""
    url = licensed_history
    async with serve_api(settings_for(url)) as api:
        expected = await answers(api)
    [(job_id,)] = await fetch(
        url,
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'",
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CALL run_job(%s)", [job_id])
        await conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('ticks') AS c"
        )
    compressed = await fetch(
        url,
        "SELECT count(*) FILTER (WHERE NOT is_compressed) FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'ticks'",
    )
    await refresh_rankings(settings_for(url))

    async with serve_api(settings_for(url)) as api:
        actual = await answers(api)

    assert [(0,)] == compressed
    assert [] == differences(expected, actual)


async def test_the_same_history_gives_the_same_answers_on_both_editions(
    licensed_history: str, apache_api: httpx.AsyncClient
) -> None:
    """/prices, /rankings and candles agree between timescale and apache mode."""
    async with serve_api(settings_for(licensed_history)) as licensed_api:
        expected = await answers(licensed_api)
        actual = await answers(apache_api)

    assert len(EXCHANGES) * PAIRS_PER_EXCHANGE == len(expected["/rankings"]["rankings"])
    assert [] == differences(expected, actual)


async def test_health_reports_timescale_mode_with_compression(
    licensed_api: httpx.AsyncClient,
) -> None:
    """/health on the licensed edition says timescale mode, compression available."""
    body = (await licensed_api.get("/health")).json()

    assert ("timescale", "available") == (body["storage_mode"], body["compression"])
