"""Hostile roles (issue 17): what each role holds, and that nothing it may run changes history.

For each of `collector`, `api`, `grafana` and a fresh LOGIN role granted nothing, the set of
privileges it holds is read from the catalog and must equal the one listed here (a future
grant fails these tests until it is listed, and SECURITY.md's threat model with it). Then,
logged in as that role under hostile session settings, every statement it might turn against
the history is run with hostile arguments, and the history (ticks and markets) must be
unchanged byte for byte, the stored ranking still there.
"""

from datetime import UTC, datetime, timedelta
from typing import LiteralString

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from collector.ticks import MAX_PRICE, MIN_PRICE, Tick
from collector.writer import write_ticks
from datatracker.schema import MIGRATION_LOCK
from datatracker.storage import StorageMode
from tests.api_server import serve_api
from tests.conftest import as_role
from tests.integration.history import api_settings, refresh_candles, refresh_rankings
from tests.integration.privileges import held_privileges, refused

STRANGER = "datatracker_stranger"  # any role that can log in, granted nothing
STRANGER_PASSWORD = "stranger"

# Every row of the history, as text, hashed: ticks in key order, then markets by id.
CHECKSUM = """
SELECT (SELECT md5(coalesce(string_agg(t::text, ';' ORDER BY t.market_id, t.time), ''))
        FROM ticks AS t),
       (SELECT md5(coalesce(string_agg(m::text, ';' ORDER BY m.id), '')) FROM markets AS m),
       (SELECT count(*) FROM ticks),
       (SELECT count(*) FROM rankings)
"""

# Session settings a hostile role sets before anything else: a POSIX zone whose daylight-saving
# rule jumps 320 hours (it once moved apply_retention()'s horizon days into the future), odd
# date, interval and float output, a search path that looks in its own temporary schema first,
# little memory, planner switches, a forged span for the ticks' announcement.
HOSTILE_SETTINGS: tuple[LiteralString, ...] = (
    "SET TimeZone = '<A>+160<B>-160,M11.5.0,M12.5.0'",
    "SET DateStyle = 'SQL, DMY'",
    "SET IntervalStyle = 'sql_standard'",
    "SET search_path = pg_temp, public",
    "SET work_mem = '64kB'",
    "SET extra_float_digits = -15",
    "SET enable_hashagg = off",
    "SET enable_indexonlyscan = off",
    "SET jit = on",
    "SET jit_above_cost = 0",
    "SET datatracker.ticks_span = '99999999999999999999/-1'",
    "SET default_transaction_read_only = off",
    "SET idle_in_transaction_session_timeout = 0",
)
# The same with every statement cut short: whatever a function has done when it is cancelled
# must roll back.
TIMEOUT_SETTINGS: tuple[LiteralString, ...] = (
    *HOSTILE_SETTINGS,
    "SET statement_timeout = '1ms'",
    "SET lock_timeout = '1ms'",
)
SETTINGS = {"hostile": HOSTILE_SETTINGS, "timeouts": TIMEOUT_SETTINGS}

# What any role but the owner must be refused: writes and DDL on the history and everything
# derived from it, the owner's functions, what only a superuser may set, temporary and new
# objects, large objects, migrate's advisory lock.
EVERYONE_REFUSED: tuple[LiteralString, ...] = (
    "UPDATE ticks SET price = price * 2",
    "DELETE FROM ticks",
    "TRUNCATE ticks",
    "DROP TABLE ticks",
    "ALTER TABLE ticks DISABLE TRIGGER ALL",
    "ALTER TABLE ticks DROP CONSTRAINT ticks_price_range",
    "SELECT drop_chunks('ticks', older_than => now() + interval '1 day')",
    "SELECT drop_chunks('ticks', newer_than => now() - interval '30 days')",
    "UPDATE markets SET symbol = CASE symbol WHEN 'btcusd' THEN 'ethusd' ELSE 'btcusd' END"
    " WHERE symbol IN ('btcusd', 'ethusd') AND exchange = 'kraken'",
    "UPDATE markets SET id = id + 1000",
    "UPDATE markets SET exchange = 'elsewhere'",
    "UPDATE markets SET base = 'X', quote = 'Y'",
    "DELETE FROM markets",
    "TRUNCATE markets",
    "SELECT setval('markets_id_seq', 1)",
    "SELECT nextval('markets_id_seq')",
    "DELETE FROM rankings",
    "UPDATE rankings SET stdv = 0",
    "TRUNCATE rankings",
    "INSERT INTO rankings_window (window_end, ranked) VALUES ('infinity', 0)"
    " ON CONFLICT (one) DO UPDATE SET window_end = excluded.window_end",
    "UPDATE storage_settings SET raw_retention = '2 days'",
    "SELECT configure_storage('2 days', NULL, NULL, NULL)",
    "UPDATE collector_runs SET ok = false",
    "DELETE FROM collector_runs",
    "DELETE FROM set_aside_cycles",
    "SET session_replication_role = replica",
    "CREATE TEMP TABLE scratch (x int)",
    "CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT 1'",
    "CREATE TABLE public.scratch (x int)",
    "CREATE SCHEMA scratch",
    "CREATE FUNCTION public.fixed_length(text) RETURNS interval LANGUAGE sql AS 'SELECT NULL'",
    "SELECT lo_create(0)",
    "SELECT lo_creat(-1)",
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT lo_import('/etc/hostname')",
    "SELECT pg_advisory_lock(1685353067)",
    "SELECT pg_try_advisory_lock(1685353067)",
    "SELECT pg_advisory_lock_shared(1685353067)",
    "SELECT pg_try_advisory_xact_lock(1685353067)",
    "SELECT pg_advisory_lock(1, 2)",
)
# What a reader (or a stranger) must be refused besides: every write and the writer's functions.
READER_REFUSED: tuple[LiteralString, ...] = (
    *EVERYONE_REFUSED,
    "INSERT INTO ticks (time, market_id, price) VALUES (now() - interval '7 seconds', 1, 1)",
    "INSERT INTO markets (exchange, symbol, base, quote, first_seen, last_seen)"
    " VALUES ('kraken', 'fakeusd', 'FAKE', 'USD', now(), now())",
    "UPDATE markets SET last_seen = now()",
    "INSERT INTO collector_runs VALUES (now(), 'kraken', true, 1, 1, 0, 0.1, NULL)",
    "INSERT INTO set_aside_cycles VALUES (now(), now(), 'x', NULL, '{}', 0)",
    "SELECT refresh_rankings()",
    "SELECT apply_retention()",
    "SELECT roll_up_candles_5m('-infinity', 'infinity')",
    "SELECT roll_up_candles_1h('-infinity', 'infinity')",
    "INSERT INTO candles_5m VALUES (now(), 1, 1, 1, 1, 1, 1, 1, 0)",
    "DELETE FROM candles_1h",
)
# What the collector must be refused besides: ticks that are not true history (absurd prices,
# instants in the future or past the retention horizon), a tick changed through its
# conflict, markets narrowed, moved to the future or given an id of their own, run records
# from the future, a ranking over a window that is not a finite instant up to now, and on the
# Apache edition any direct write of candles.
COLLECTOR_REFUSED: tuple[LiteralString, ...] = (
    *EVERYONE_REFUSED,
    "INSERT INTO ticks (time, market_id, price) VALUES (now() - interval '7 seconds', 1, 1e300)",
    "INSERT INTO ticks (time, market_id, price) VALUES (now() - interval '7 seconds', 1, 1e12)",
    "INSERT INTO ticks (time, market_id, price) VALUES (now() - interval '7 seconds', 1, 5e-324)",
    "INSERT INTO ticks (time, market_id, price) VALUES (now() - interval '7 seconds', 1, 0)",
    "INSERT INTO ticks (time, market_id, price) VALUES (now() - interval '7 seconds', 1, -1)",
    "INSERT INTO ticks (time, market_id, price) VALUES (now() - interval '7 seconds', 1, 'NaN')",
    "INSERT INTO ticks (time, market_id, price)"
    " VALUES (now() - interval '7 seconds', 1, 'Infinity')",
    "INSERT INTO ticks (time, market_id, price, exchange_time)"
    " VALUES (now() - interval '7 seconds', 1, 1, '3000-01-01')",
    "INSERT INTO ticks (time, market_id, price) VALUES (now() + interval '1 day', 1, 1)",
    "INSERT INTO ticks (time, market_id, price) VALUES (now() + interval '2 minutes', 1, 1)",
    "INSERT INTO ticks (time, market_id, price) VALUES (now() - interval '8 days', 1, 1)",
    "INSERT INTO ticks (time, market_id, price) VALUES ('infinity', 1, 1)",
    "INSERT INTO ticks (time, market_id, price)"
    " SELECT time, market_id, price * 2 FROM ticks ORDER BY time DESC LIMIT 1"
    " ON CONFLICT (market_id, time) DO UPDATE SET price = excluded.price",
    "UPDATE markets SET last_seen = last_seen - interval '1 hour'",
    "UPDATE markets SET first_seen = first_seen + interval '1 minute'",
    "UPDATE markets SET last_seen = now() + interval '1 day'",
    "INSERT INTO markets (id, exchange, symbol, base, quote, first_seen, last_seen)"
    " OVERRIDING SYSTEM VALUE VALUES (100000, 'kraken', 'fakeusd', 'FAKE', 'USD', now(), now())",
    "INSERT INTO markets (exchange, symbol, base, quote, first_seen, last_seen)"
    " VALUES ('kraken', 'fakeusd', 'FAKE', 'USD', now(), now() + interval '1 day')",
    "INSERT INTO markets (exchange, symbol, base, quote, first_seen, last_seen)"
    " VALUES ('kraken', 'fakeusd', 'FAKE', 'USD', now(), now() - interval '1 day')",
    "INSERT INTO markets (exchange, symbol, base, quote, first_seen, last_seen)"
    " VALUES ('kraken', 'btcusd', 'BTC', 'USD', now(), now())"
    " ON CONFLICT (exchange, symbol) DO UPDATE SET symbol = 'ethusd'",
    "INSERT INTO collector_runs"
    " VALUES (now() + interval '1 day', 'kraken', true, 1, 1, 0, 0.1, NULL)",
    "INSERT INTO set_aside_cycles VALUES (now() + interval '1 day', now(), 'x', NULL, '{}', 0)",
    "SELECT refresh_rankings('infinity')",
    "SELECT refresh_rankings('-infinity')",
    "SELECT refresh_rankings(now() + interval '1 hour')",
    "SELECT refresh_rankings(NULL)",
    "SELECT apply_retention('-1 day', '-1 day', '-1 day')",
    # migrate's advisory lock key (0x6474726B) as an instant, and instants that are none.
    "SELECT take_instant_turn(to_timestamp(1685353067 / 1e6))",
    "SELECT take_instant_turn('-infinity')",
    "SELECT take_instant_turn(NULL)",
)
COLLECTOR_REFUSED_APACHE: tuple[LiteralString, ...] = (
    "INSERT INTO candles_5m VALUES (now(), 1, 1, 1, 1, 1, 1, 1, 0)",
    "UPDATE candles_5m SET high = 1e300",
    "DELETE FROM candles_1h",
    "TRUNCATE candles_1h",
)
# The candle aggregates of the Timescale-License edition, which the collector no longer owns
# (migration 0006): it cannot drop, empty, refresh or re-plan them.
COLLECTOR_REFUSED_TIMESCALE: tuple[LiteralString, ...] = (
    "DROP MATERIALIZED VIEW candles_5m",
    "ALTER MATERIALIZED VIEW candles_1h SET (timescaledb.materialized_only = true)",
    "CALL refresh_continuous_aggregate('candles_5m', NULL, NULL)",
    "SELECT remove_continuous_aggregate_policy('candles_1h')",
    "SELECT remove_retention_policy('candles_5m')",
    "DELETE FROM candles_5m",
)
# What the collector may run under the same settings, and must not change history by: its
# upkeep (retention, the ranking, the Apache roll-ups from -infinity to infinity) and a tick
# it has already written, written again (insert-if-missing).
COLLECTOR_MAY: tuple[LiteralString, ...] = (
    "SELECT apply_retention()",
    "SELECT refresh_rankings()",
    "INSERT INTO ticks (time, market_id, price)"
    " SELECT time, market_id, price * 2 FROM ticks ORDER BY time DESC LIMIT 1"
    " ON CONFLICT DO NOTHING",
    "SELECT ticks_storage()",
    "SELECT take_instant_turn(now())",
)
COLLECTOR_MAY_APACHE: tuple[LiteralString, ...] = (
    "SELECT roll_up_candles_5m('-infinity', 'infinity')",
    "SELECT roll_up_candles_1h('-infinity', 'infinity')",
)

READ_FUNCTIONS = [
    "function announce_change()",
    "function announce_ticks_change()",
    "function fixed_length(interval)",
    "function market_stats(timestamp with time zone,timestamp with time zone)",
    "function refuse_out_of_bounds()",
    "function ticks_storage()",
    "function volatility_ranking(text,timestamp with time zone)",
    "function volatility_ranks(timestamp with time zone)",
]
READ_TABLES = [
    f"table {name} SELECT"
    for name in (
        "candles_1h",
        "candles_5m",
        "collector_runs",
        "markets",
        "prices",
        "rankings",
        "rankings_window",
        "schema_migrations",
        "set_aside_cycles",
        "storage_settings",
        "ticks",
    )
]
# job_health() (migration 0007) reads TimescaleDB's job history with its owner's rights.
READER_HOLDS = sorted([*READ_FUNCTIONS, *READ_TABLES, "function job_health()"])
COLLECTOR_HOLDS = sorted(
    [
        *READER_HOLDS,
        "column markets.first_seen UPDATE",
        "column markets.last_seen UPDATE",
        "function apply_retention()",
        "function refresh_rankings(timestamp with time zone)",
        "function take_instant_turn(timestamp with time zone)",
        "sequence markets_id_seq SELECT",
        "table collector_runs INSERT",
        "table markets INSERT",
        "table set_aside_cycles INSERT",
        "table ticks INSERT",
    ]
)
HOLDS: dict[tuple[str, StorageMode], list[str]] = {
    ("collector", "apache"): sorted(
        [
            *COLLECTOR_HOLDS,
            "function roll_up_candles_1h(timestamp with time zone,timestamp with time zone)",
            "function roll_up_candles_5m(timestamp with time zone,timestamp with time zone)",
        ]
    ),
    ("collector", "timescale"): COLLECTOR_HOLDS,
    **{
        (role, edition): READER_HOLDS
        for role in ("api", "grafana")
        for edition in ("apache", "timescale")
    },
    **{(STRANGER, edition): READ_FUNCTIONS for edition in ("apache", "timescale")},
}


@pytest.fixture
def stranger_url(database_url: str) -> str:
    """The test's database as a role that can log in and was granted nothing."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("SELECT FROM pg_roles WHERE rolname = %s", [STRANGER]).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(STRANGER)))
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(STRANGER), sql.Literal(STRANGER_PASSWORD)
            )
        )
    return make_conninfo(database_url, user=STRANGER, password=STRANGER_PASSWORD)


async def checksum(database_url: str) -> tuple[object, ...]:
    """The history's checksums, its ticks and the ranked pairs, read as the superuser."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (await conn.execute(CHECKSUM)).fetchone()
    assert row is not None
    return tuple(row)


async def run_as(
    url: str, settings: tuple[LiteralString, ...], statements: tuple[LiteralString, ...]
) -> list[LiteralString]:
    """Log in at `url`, apply `settings`, run each statement; return those refused (any error)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for setting in settings:
            await conn.execute(setting)
        return await refused(conn, statements, psycopg.Error)


def role_url(database_url: str, stranger_url: str, role: str) -> str:
    return stranger_url if role == STRANGER else as_role(database_url, role)


@pytest.mark.parametrize("role", ["collector", "api", "grafana", STRANGER])
async def test_each_role_holds_exactly_the_listed_privileges(
    database_url: str, stranger_url: str, edition: StorageMode, role: str
) -> None:
    """The privileges each role holds, read from the catalog, are exactly those listed: a new
    grant (or a lost one) fails here."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        held = await held_privileges(conn, role)

    assert HOLDS[role, edition] == held


@pytest.mark.parametrize("settings", list(SETTINGS))
@pytest.mark.parametrize("role", ["api", "grafana", STRANGER])
async def test_a_reader_or_stranger_changes_nothing_whatever_it_runs(
    history: str, stranger_url: str, role: str, settings: str
) -> None:
    """As a reader or a role granted nothing, under hostile settings, every write, DDL, owner's
    function, temporary object, large object and migrate's advisory lock is refused, and the
    history is unchanged byte for byte."""
    before = await checksum(history)

    refusals = await run_as(
        role_url(history, stranger_url, role), SETTINGS[settings], READER_REFUSED
    )

    assert list(READER_REFUSED) == refusals
    assert before == await checksum(history)
    async with await psycopg.AsyncConnection.connect(history, autocommit=True) as conn:
        left = await conn.execute("SELECT count(*) FROM pg_largeobject_metadata")
        assert (0,) == await left.fetchone()


@pytest.mark.parametrize("settings", list(SETTINGS))
async def test_the_collector_adds_only_true_history_whatever_it_runs(
    history: str, edition: StorageMode, settings: str
) -> None:
    """As `collector`, under hostile settings (a POSIX zone with a 320-hour DST jump among
    them), every statement that would erase, falsify or bend history is refused; its upkeep
    runs (unless cut short) without changing a byte of the ticks or markets or emptying the
    ranking."""
    url = as_role(history, "collector")
    refuse = COLLECTOR_REFUSED + (
        COLLECTOR_REFUSED_APACHE if edition == "apache" else COLLECTOR_REFUSED_TIMESCALE
    )
    may = COLLECTOR_MAY + (COLLECTOR_MAY_APACHE if edition == "apache" else ())
    before = await checksum(history)

    refusals = await run_as(url, SETTINGS[settings], refuse)
    may_refusals = await run_as(url, SETTINGS[settings], may)

    assert list(refuse) == refusals
    if settings == "hostile":
        assert [] == may_refusals
    else:
        # Cut at 1 ms, the upkeep that writes (retention, the ranking) cannot finish; what
        # finishes within it (taking an instant's turn, on PostgreSQL 18) may.
        assert {"SELECT apply_retention()", "SELECT refresh_rankings()"} <= set(may_refusals)
    assert before == await checksum(history)
    assert 0 < before[3]


async def test_the_collector_cannot_write_into_a_chunk_or_copy_around_the_bounds(
    history: str,
) -> None:
    """Writing straight into the newest chunk of ticks, or by COPY, meets the same bounds."""
    url = as_role(history, "collector")
    before = await checksum(history)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (
            await conn.execute(
                "SELECT c::text FROM show_chunks('ticks') AS c ORDER BY 1 DESC LIMIT 1"
            )
        ).fetchone()
        assert row is not None
        schema, name = row[0].split(".")
        chunk_refused = []
        for price, ahead in ((1e300, "-7 seconds"), (1.0, "2 minutes")):
            try:
                await conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (time, market_id, price)"
                        " VALUES (now() + {}::interval, 1, {})"
                    ).format(sql.Identifier(schema, name), sql.Literal(ahead), sql.Literal(price))
                )
            except psycopg.Error as error:
                chunk_refused.append(type(error))
        now = datetime.now(UTC)
        copy_refused = []
        for when, price in ((now + timedelta(days=1), 1.0), (now, 1e300)):
            try:
                async with conn.cursor().copy(
                    "COPY ticks (time, market_id, price) FROM STDIN"
                ) as copy:
                    await copy.write_row((when, 1, price))
            except psycopg.Error as error:
                copy_refused.append(type(error))

    assert 2 == len(chunk_refused)
    assert [psycopg.errors.CheckViolation] * 2 == copy_refused
    assert before == await checksum(history)


async def test_the_extreme_accepted_prices_keep_every_aggregate_finite(
    database_url: str, collector_url: str
) -> None:
    """A pair whose ticks alternate between the smallest and the largest price the database
    accepts is ranked with a finite stdv and cv, gets its candles, and /prices answers a finite
    stdv: no accepted price can break an aggregate."""
    largest = 999_999_999_999.9
    assert MIN_PRICE < largest < MAX_PRICE
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ticks = [
        Tick(
            now - timedelta(minutes=m),
            "kraken",
            "wildusd",
            "WILD",
            "USD",
            MIN_PRICE if m % 2 else largest,
        )
        for m in range(1, 121)
    ]
    async with await psycopg.AsyncConnection.connect(collector_url, autocommit=True) as conn:
        await write_ticks(conn, ticks)
    await refresh_candles(database_url, since=now - timedelta(hours=3))
    await refresh_rankings(database_url)

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        ranked = await (
            await conn.execute("SELECT stdv, cv, change_pct FROM rankings WHERE symbol = 'wildusd'")
        ).fetchone()
        candles = await (
            await conn.execute(
                "SELECT count(*), bool_and(m2 < 'Infinity') FROM candles_5m"
                " JOIN markets ON markets.id = market_id WHERE symbol = 'wildusd'"
            )
        ).fetchone()
    async with serve_api(api_settings(database_url)) as api:
        prices = (await api.get("/prices/kraken/wildusd")).json()

    assert ranked is not None
    assert all(abs(value) < float("inf") for value in ranked)
    assert candles is not None
    assert (True, True) == (candles[0] >= 24, candles[1])
    assert 120 == len(prices["prices"])
    assert isinstance(prices["stdv"], float)
    assert prices["stdv"] > 1e11


async def test_health_is_not_fooled_by_a_tick_from_the_future(
    database_url: str, collector_url: str
) -> None:
    """A tick a day ahead (which only the owner can still write) does not make stale data look
    fresh: /health reports the newest tick at or before now plus one interval, and fails."""
    old = datetime.now(UTC) - timedelta(hours=1)
    async with await psycopg.AsyncConnection.connect(collector_url, autocommit=True) as conn:
        await write_ticks(conn, [Tick(old, "kraken", "btcusd", "BTC", "USD", 1.0)])
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO ticks (time, market_id, price)"
            " SELECT now() + interval '1 day', id, 2.0 FROM markets"
        )

    async with serve_api(api_settings(database_url)) as api:
        answer = await api.get("/health")

    body = answer.json()
    assert (503, "failing") == (answer.status_code, body["status"])
    assert 3500 < body["newest_tick_age_seconds"] < 3700


def test_the_refused_advisory_key_is_migrates() -> None:
    """The advisory key the refusals name is the one migrate takes."""
    assert 1685353067 == MIGRATION_LOCK
