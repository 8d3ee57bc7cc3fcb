"""Every query in docs/sql.md answers: on the Apache edition, and on the licensed one."""

import re
from pathlib import Path

import psycopg
import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
TIMESCALE_ONLY = "-- timescale mode"


def test_the_document_has_its_queries() -> None:
    """docs/sql.md holds the stats, candles, ranking and storage queries."""
    expected = ["stddev_samp", "time_bucket", "volatility_ranking", "chunk_compression_stats"]

    assert expected == [word for word in expected if any(word in block for block in BLOCKS)]


@pytest.mark.parametrize("query", [b for b in BLOCKS if not b.startswith(TIMESCALE_ONLY)])
async def test_each_query_answers_on_the_apache_edition(apache_history: str, query: str) -> None:
    """The query runs and returns rows over the simulated history."""
    async with await psycopg.AsyncConnection.connect(apache_history) as conn:
        cursor = await conn.execute(query)  # type: ignore[arg-type]  # trusted documentation
        rows = await cursor.fetchall()

    assert [] != rows


@pytest.mark.parametrize("query", BLOCKS)
async def test_each_query_runs_on_the_licensed_edition(licensed_history: str, query: str) -> None:
    """The query runs and returns rows on the Timescale License edition too."""
    async with await psycopg.AsyncConnection.connect(licensed_history) as conn:
        cursor = await conn.execute(query)  # type: ignore[arg-type]  # trusted documentation
        rows = await cursor.fetchall()

    assert [] != rows
