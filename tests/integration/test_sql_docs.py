"""Every query in docs/sql.md answers for a reader, on the edition it is written for."""

import re
from pathlib import Path

import psycopg
import pytest

from tests.conftest import as_role

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
TIMESCALE_ONLY = "-- timescale mode"


def test_the_document_has_its_queries() -> None:
    """docs/sql.md holds the stats, candles, ranking and storage queries."""
    expected = ["stddev_samp", "time_bucket", "volatility_ranking", "chunk_compression_stats"]

    assert expected == [word for word in expected if any(word in block for block in BLOCKS)]


def edition_of(query: str) -> list[pytest.MarkDecorator]:
    """The edition mark of a query docs/sql.md marks as timescale mode only."""
    return [pytest.mark.edition("timescale")] if query.startswith(TIMESCALE_ONLY) else []


@pytest.mark.parametrize("query", [pytest.param(b, marks=edition_of(b)) for b in BLOCKS])
async def test_each_query_answers_as_a_reader(history: str, query: str) -> None:
    """The query runs as a read-only role (grafana's) and returns rows over the history."""
    async with await psycopg.AsyncConnection.connect(as_role(history, "grafana")) as conn:
        cursor = await conn.execute(query)  # type: ignore[arg-type]  # trusted documentation
        rows = await cursor.fetchall()

    assert [] != rows
