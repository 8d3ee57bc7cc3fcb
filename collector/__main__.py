"""`python -m collector [run | once | backfill --hours N]`."""

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime

from collector.backfill import backfill
from collector.cycle import cycle_instant, run_cycle
from collector.errors import log_failure
from collector.service import resume_walk, serve, start_maintenance
from collector.sources import build_source
from collector.spool import SpoolUnusable
from collector.store import Store
from datatracker.database import create_pool, wait_for_database
from datatracker.logs import configure_logging
from datatracker.settings import Settings, load_settings

log = logging.getLogger("collector")

# `once` and `backfill` are run by hand or by scripts: fail rather than wait forever.
COMMAND_DB_TIMEOUT_SECONDS = 30.0
# How long a write waits for a connection before the writer counts the database as gone
# (and tries again a second later); it never holds up a fetch. Once the pool has found the
# database down, writes are refused at once until its probe reaches it (datatracker.circuit).
POOL_WAIT_SECONDS = 10.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m collector", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="collect every interval until stopped (the default)")
    commands.add_parser("once", help="run one cycle now; exit 1 unless every exchange was written")
    fill = commands.add_parser("backfill", help="fill the last N hours of history")
    fill.add_argument("--hours", type=float, required=True, help="how far back, at most 168")
    args = parser.parse_args(argv)
    if args.command == "backfill" and not 0 < args.hours <= 168:
        parser.error("--hours must be more than 0 and at most 168")
    return args


async def main(settings: Settings, args: argparse.Namespace) -> int:
    command = args.command or "run"
    source = build_source(settings)
    # The writer, upkeep, a gap being filled and retention: at most three at once (a backfill
    # writes on one while the candles of what it wrote are brought up to date on another).
    pool = create_pool(
        settings.database_url, max_size=3, name="collector", timeout=POOL_WAIT_SECONDS
    )
    try:
        if command == "run":
            # Collecting starts whether or not the database answers: cycles wait in the spool.
            await pool.open(wait=False)
            await serve(settings, source, pool)
            return 0
        await wait_for_database(settings.database_url, give_up_after=COMMAND_DB_TIMEOUT_SECONDS)
        await pool.open(wait=True)
        interval = settings.collect_interval_seconds
        now = cycle_instant(datetime.now(UTC), interval)
        if command == "once":
            await resume_walk(source, pool)
            report = await run_cycle(
                source, Store(pool), now, timeout_seconds=settings.exchange_timeout_seconds
            )
            if not report.stored:
                return 1
            await (await start_maintenance(settings, pool)).after_cycles(now, now)
            return 1 if report.failed else 0
        maintenance = await start_maintenance(settings, pool)
        await backfill(source, pool, now, args.hours, candles=maintenance)
        await maintenance.refresh_rankings()
        return 0
    finally:
        await source.close()
        await pool.close()


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        return asyncio.run(main(settings, args))
    except SpoolUnusable as error:  # SpoolInUse too
        log.error("%s", error)
        return 2
    except Exception as error:
        if unknown_exchange(error):
            log.error("configuration error: %s", error)
            return 2
        log_failure(log, "collector stopped", error)
        return 1


def unknown_exchange(error: Exception) -> bool:
    """Whether `error` names an exchange ccxt does not know. Its class lives with the live
    source, imported only when one is built: simulated runs never import ccxt (~0.4 s and
    tens of MB)."""
    live = sys.modules.get("collector.sources.live")
    return live is not None and isinstance(error, live.UnknownExchangeError)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
