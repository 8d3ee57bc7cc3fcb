"""The Timescale-License edition: policies, aggregates, retention and compression, with the
collector and the API as their own roles. Every test here runs on that edition only."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from collector.ticks import Tick
from collector.writer import write_ticks
from datatracker.schema import migrate
from datatracker.settings import load_settings
from tests.api_server import serve_api
from tests.conftest import TIMESCALEDB_IMAGE, run_server
from tests.integration.comparing import differences
from tests.integration.history import ANCHOR, api_settings, refresh_rankings
from tests.integration.retention import chunk_edges, run_jobs

pytestmark = pytest.mark.edition("timescale")

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


async def test_migrate_creates_the_policies_and_continuous_aggregates(database_url: str) -> None:
    """On this edition migrate adds retention, compression and refresh policies; refreshes reach
    back to a day inside the raw retention, and the candle policies run as the candles' owner."""
    expected = [
        ("policy_refresh_continuous_aggregate", "candles_1h",
         {"start_offset": "6 days", "end_offset": "01:00:00"}),
        ("policy_retention", "candles_1h", {"drop_after": "730 days"}),
        ("policy_refresh_continuous_aggregate", "candles_5m",
         {"start_offset": "6 days", "end_offset": "00:05:00"}),
        ("policy_retention", "candles_5m", {"drop_after": "90 days"}),
        ("policy_compression", "ticks", {"compress_after": "1 day"}),
        ("policy_retention", "ticks", {"drop_after": "7 days"}),
    ]  # fmt: skip
    owners = await fetch(
        database_url,
        "SELECT DISTINCT owner::text FROM timescaledb_information.jobs"
        " WHERE hypertable_name LIKE 'candles%'",
    )

    assert expected == await fetch(database_url, JOBS)
    assert [("tracker_candles",)] == owners


def test_this_run_has_the_timescaledb_compose_deploys() -> None:
    """The Timescale-License run tests the TimescaleDB version docker-compose.yml pins."""
    assert f"timescaledb:{run_server().version}-" in TIMESCALEDB_IMAGE


async def test_candles_are_real_time_continuous_aggregates(database_url: str) -> None:
    """candles_5m and candles_1h are continuous aggregates over ticks with real-time aggregation."""
    rows = await fetch(
        database_url,
        "SELECT view_name, hypertable_name, materialized_only"
        " FROM timescaledb_information.continuous_aggregates ORDER BY view_name",
    )

    assert [("candles_1h", "ticks", False), ("candles_5m", "ticks", False)] == rows


async def test_migrating_with_other_intervals_replaces_the_policies(database_url: str) -> None:
    """migrate with another RAW_RETENTION replaces the policies it governs, keeps the others,
    and migrating back restores them."""
    before = await fetch(database_url, JOBS)
    ten_days = load_settings(_env_file=None, database_url=database_url, raw_retention="10 days")
    migrate(database_url, ten_days)
    changed = await fetch(database_url, JOBS)
    migrate(database_url, load_settings(_env_file=None, database_url=database_url))

    assert ("policy_retention", "ticks", {"drop_after": "10 days"}) in changed
    assert [job[2]["start_offset"] for job in changed if "start_offset" in job[2]] == [
        "9 days",
        "9 days",
    ]
    assert [job for job in before if "start_offset" not in job[2] and job[2] != {
        "drop_after": "7 days"}] == [job for job in changed if "start_offset" not in job[2]
                                     and job[2] != {"drop_after": "10 days"}]  # fmt: skip
    assert before == await fetch(database_url, JOBS)


async def test_the_retention_job_drops_exactly_the_chunks_past_the_horizon(
    database_url: str,
) -> None:
    """Running the ticks' retention policy drops the chunks that ended 7 days ago, whatever the
    time of day, and no other."""
    horizon = datetime.now(UTC) - timedelta(days=7)
    edges = chunk_edges(horizon)
    old = [
        Tick(moment, "retention", "oldusd", "OLD", "USD", float(n))
        for n, moment in enumerate(edges.ticks, start=1)
    ]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await write_ticks(conn, old)
    chunks = "SELECT show_chunks('ticks')::text ORDER BY 1"
    before = await fetch(database_url, chunks)

    await run_jobs(database_url, "policy_retention", "ticks")

    assert len(before) - edges.expired_chunks == len(await fetch(database_url, chunks))
    assert edges.kept_prices == [
        row[0]
        for row in await fetch(
            database_url, "SELECT price FROM prices WHERE exchange = 'retention' ORDER BY price"
        )
    ]


async def test_compressed_chunks_answer_every_query_as_before(history: str) -> None:
    """After the compression job and compressing every chunk, the API answers the same, and so
    does a ranking refreshed from the compressed chunks."""
    async with serve_api(api_settings(history)) as api:
        expected = await answers(api)
    await run_jobs(history, "policy_compression", "ticks")
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as conn:
        await conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('ticks') AS c"
        )
    compressed = await fetch(
        history,
        "SELECT count(*) FILTER (WHERE NOT is_compressed) FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'ticks'",
    )
    await refresh_rankings(history)

    async with serve_api(api_settings(history)) as api:
        actual = await answers(api)

    assert [(0,)] == compressed
    assert [] == differences(expected, actual)


async def test_health_reports_timescale_mode_with_compression(
    history_api: httpx.AsyncClient,
) -> None:
    """/health on this edition says timescale mode, compression available."""
    body = (await history_api.get("/health")).json()

    assert ("timescale", "available") == (body["storage_mode"], body["compression"])
