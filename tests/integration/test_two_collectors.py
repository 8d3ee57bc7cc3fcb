"""Two collectors on one database: each tick stored once, and nothing for PostgreSQL to log."""

import signal
from pathlib import Path

import psycopg

from datatracker.schema import migrate
from datatracker.storage import StorageMode
from tests.conftest import as_role, bootstrap, execute
from tests.integration.collector_process import collectors, exited, stored_cycles, until
from tests.private_cluster import private_cluster

EXCHANGES, PAIRS = "kraken,okx", 5
CYCLES = 6


async def test_two_collectors_add_no_error_to_the_servers_log(
    edition: StorageMode, tmp_path: Path
) -> None:
    """Two collectors of the same pairs at 2 s cycles on one database (each its own spool)
    store every instant once, whole, and their sessions add no ERROR to PostgreSQL's log:
    the second writer of an instant skips the stored ticks instead of failing a COPY."""
    with private_cluster(edition) as cluster:
        execute(cluster.url(), "CREATE DATABASE {}", "datatracker")
        url = cluster.url("datatracker")
        bootstrap(url)
        migrate(url)
        logged_before = cluster.log_size()
        settings = {
            "DATABASE_URL": as_role(url, "collector"),
            "SUPPORTED_EXCHANGES": EXCHANGES,
            "SIMULATED_PAIRS_PER_EXCHANGE": str(PAIRS),
            "COLLECT_INTERVAL_SECONDS": "2",
            "GAP_FILL_MAX_HOURS": "0",
        }
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with (
            collectors(tmp_path / "a", **settings) as first,
            collectors(tmp_path / "b", **settings) as second,
        ):
            processes = [first.start(), second.start()]

            async def cycles_stored() -> bool:
                return len(await stored_cycles(url)) >= CYCLES

            await until(cycles_stored, 90, f"{CYCLES} cycles stored")
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                assert 0 == await exited(process, 30)
            stderr = first.stderr(processes[0]) + second.stderr(processes[1])
        log = cluster.log_since(logged_before)
        cycles = await stored_cycles(url)
        with psycopg.connect(url) as conn:
            runs = conn.execute("SELECT count(*), count(DISTINCT time) FROM collector_runs")
            run_rows, run_instants = runs.fetchone() or (0, 0)

    sessions = [line for line in log.splitlines() if "collector@datatracker" in line]
    assert [] == [line for line in sessions if "ERROR:" in line], log
    assert {2 * PAIRS} == set(cycles.values())
    assert run_rows == 2 * run_instants  # one row per exchange and instant, not per collector
    assert "Traceback" not in stderr
    # Both wrote: the second's cycles were there, written or skipped, not set aside.
    assert "cycle set aside" not in stderr
