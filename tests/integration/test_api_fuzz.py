"""Property-based fuzzing of the API from its own OpenAPI schema: no 500, nothing undocumented."""

import asyncio
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from collector.sources.simulated import SimulatedSource
from collector.ticks import normalise
from collector.writer import TickWriter
from datatracker.settings import load_settings
from tests.api_server import serve_api

# Bounds keep the run within about a minute on two cores.
MAX_EXAMPLES = 40
MAX_SECONDS = 90


async def load_an_hour(conn: psycopg.AsyncConnection) -> None:
    """An hour of a small simulated walk, so fuzzed requests also hit real pairs."""
    source = SimulatedSource(["kraken", "binance"], pairs_per_exchange=5, seed=5)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    writer = TickWriter()
    for minute in range(60, -1, -1):
        at = end - timedelta(minutes=minute)
        ticks = [
            tick
            for exchange in source.exchanges
            for tick in normalise(exchange, at, await source.fetch_quotes(exchange, at)).ticks
        ]
        await writer.write(conn, ticks)


async def keep_collecting(conn: psycopg.AsyncConnection) -> None:
    """Write the current minute every 20 s, as the collector would, so that /health does not
    call the data stale (503) during a long run."""
    source = SimulatedSource(["kraken", "binance"], pairs_per_exchange=5, seed=5)
    writer = TickWriter()
    while True:
        at = datetime.now(UTC).replace(second=0, microsecond=0)
        for exchange in source.exchanges:
            quotes = await source.fetch_quotes(exchange, at)
            await writer.write(conn, normalise(exchange, at, quotes).ticks)
        await asyncio.sleep(20)


# Checks that input the schema cannot describe was refused on purpose: candles whose start
# is after their end (400).
CONFIG = """
[[operations]]
include-path = "/prices/{exchange}/{symbol}/candles"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404"]
"""


async def test_schemathesis_finds_no_failure(
    api_url: str, conn: psycopg.AsyncConnection, tmp_path: Path
) -> None:
    """Every check of schemathesis passes on every operation of the OpenAPI schema."""
    await load_an_hour(conn)
    collecting = asyncio.create_task(keep_collecting(conn))
    settings = load_settings(_env_file=None, database_url=api_url)
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is a development dependency: make install"
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    async with serve_api(settings) as api:
        run = await asyncio.create_subprocess_exec(
            st,
            f"--config-file={config}",
            "run",
            str(api.base_url.join("/schema/openapi.json")),
            "--checks=all",
            f"--max-examples={MAX_EXAMPLES}",
            f"--max-time={MAX_SECONDS}",
            "--seed=1",
            "--workers=1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await run.communicate()
    collecting.cancel()
    report = output.decode(errors="replace")
    assert 0 == run.returncode, report[-4000:]
