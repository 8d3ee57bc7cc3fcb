"""Reading from a hot standby: the API with DATABASE_URL on a real streaming replica of the
test server (as the role `api`) and API_LISTEN_URL on the primary answers as it does on the
primary, and never with a state older than a commit made before the request: it waits for
the standby's replay, at most API_REPLICA_WAIT_SECONDS, then answers 503 with Retry-After.

The hot-window tests of test_prices_hot, test_prices_fresh and test_windows_changes run here
too (imported: pytest collects them again in this module), with their `loaded_api` (and
`hot_api`) fixture replaced by one reading from the standby; their SQL reference
(`history_api`) stays on the primary.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from datatracker.settings import Settings, load_settings
from tests.api_server import serve_api, until_cache_listens
from tests.integration.history import HISTORY_END
from tests.integration.standby import (
    REPLICATION_PASSWORD,
    REPLICATION_ROLE,
    Standby,
    standby_of,
)
from tests.integration.test_prices_fresh import (
    commit_cycle,
    newest,
    test_an_announcement_delivered_late_is_waited_for,
    test_every_answer_after_a_visible_commit_includes_it,
)
from tests.integration.test_prices_hot import (
    pairs,
    test_a_collector_write_moves_the_windows_forward_without_dropping_them,
    test_a_window_answers_byte_for_byte_as_sql_with_stddev_samp,
    test_a_write_from_psql_drops_the_windows_and_they_are_loaded_again_in_bulk,
    until_loaded,
)
from tests.integration.test_windows_changes import (
    test_a_chunk_dropped_inside_the_window_is_cut_out_of_every_window_at_once,
    test_a_chunk_dropped_wholly_before_the_window_changes_nothing,
    test_a_deleted_market_drops_that_window_alone,
    test_a_renamed_market_changes_that_pair_alone,
    test_a_write_spanning_hours_is_read_back_into_every_window,
    test_an_announcement_not_understood_reloads_every_window_in_bulk,
    test_compressing_and_decompressing_a_chunk_drops_nothing,
    test_retention_dropping_a_chunk_before_the_window_reloads_nothing,
)

# Collected again here, as tests of this module, with the `loaded_api` and `hot_api` below.
REUSED = (
    test_a_window_answers_byte_for_byte_as_sql_with_stddev_samp,
    test_a_collector_write_moves_the_windows_forward_without_dropping_them,
    test_a_write_from_psql_drops_the_windows_and_they_are_loaded_again_in_bulk,
    test_every_answer_after_a_visible_commit_includes_it,
    test_an_announcement_delivered_late_is_waited_for,
    test_compressing_and_decompressing_a_chunk_drops_nothing,
    test_a_chunk_dropped_wholly_before_the_window_changes_nothing,
    test_a_chunk_dropped_inside_the_window_is_cut_out_of_every_window_at_once,
    test_retention_dropping_a_chunk_before_the_window_reloads_nothing,
    test_a_renamed_market_changes_that_pair_alone,
    test_a_deleted_market_drops_that_window_alone,
    test_a_write_spanning_hours_is_read_back_into_every_window,
    test_an_announcement_not_understood_reloads_every_window_in_bulk,
)
# Replay held back by the standby in the tests of the wait (recovery_min_apply_delay): in
# the test of the 503, longer than a request can wait (a sync round, then the standby).
APPLY_DELAY_SECONDS = 3.0
LONG_APPLY_DELAY_SECONDS = 6.0


@pytest.fixture(scope="session")
def standby(database_server: str) -> Iterator[Standby]:
    """A hot standby of the test server for the whole session."""
    with standby_of(database_server) as made:
        yield made


@pytest.fixture
async def standby_api_url(standby: Standby, history: str, api_url: str) -> str:
    """The test's database on the standby as the API logs in to it, once the simulated
    history has been replayed there."""
    await standby.until_replayed(api_url)
    return standby.url(api_url)


@pytest.fixture
def delay_replay(standby: Standby) -> Iterator[Callable[[float], None]]:
    """Holds the standby's replay of each commit back by the seconds given, once called (after
    the API has started: at its start the API waits for the standby to replay the primary's
    position, which takes that long while other databases of the test server commit); not
    after the test."""
    try:
        yield standby.set_apply_delay
    finally:
        standby.set_apply_delay(0)


def replica_settings(standby_api_url: str, api_url: str, **overrides: object) -> Settings:
    """The API reading from the standby and listening on the primary."""
    return load_settings(
        _env_file=None, database_url=standby_api_url, api_listen_url=api_url, **overrides
    )


@pytest.fixture
async def loaded_api(
    history: str, api_url: str, standby_api_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The API reading from the standby, with its windows, once every pair's is loaded (the
    `loaded_api` of the reused tests, in place of tests/integration/conftest.py's)."""
    async with serve_api(replica_settings(standby_api_url, api_url)) as client:
        await until_cache_listens(client)
        await until_loaded(client, len(await pairs(history)), loads=1)
        yield client


@pytest.fixture
def hot_api(loaded_api: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same API under the name the reused tests of test_prices_hot.py give it."""
    return loaded_api


async def standby_newest(standby_api_url: str) -> datetime:
    """The newest tick's time as the standby shows it now."""
    async with await psycopg.AsyncConnection.connect(standby_api_url) as conn:
        row = await (await conn.execute("SELECT max(time) FROM ticks")).fetchone()
    assert row is not None
    return row[0]


async def newest_once_caught_up(api: httpx.AsyncClient, exchange: str, symbol: str) -> datetime:
    """The pair's newest price time, asking again (at most 10 s) while the answer is the 503
    of a standby still behind."""
    for _ in range(40):
        response = await api.get(f"/prices/{exchange}/{symbol}")
        if response.status_code != 503:
            break
        assert "1" == response.headers["retry-after"]
        await asyncio.sleep(0.25)
    assert 200 == response.status_code, response.text
    return datetime.fromisoformat(response.json()["prices"][-1]["updated_at"])


# What the primary says of the role its walsender for the standby's slot serves.
STREAMING_ROLE = """
SELECT r.usename, a.rolsuper, a.rolreplication, a.rolcanlogin, a.rolcreatedb, a.rolcreaterole,
       a.rolbypassrls, (SELECT count(*) FROM pg_auth_members AS m WHERE m.member = a.oid)
FROM pg_replication_slots AS s
JOIN pg_stat_replication AS r ON r.pid = s.active_pid
JOIN pg_roles AS a ON a.rolname = r.usename
WHERE s.slot_name = %s
"""


def test_the_standby_streams_as_a_role_that_may_only_replicate(
    standby: Standby, database_url: str
) -> None:
    """As README tells users: the standby was copied and streams as a role that may log in
    and replicate and nothing else (no superuser, no other attribute, a member of no role),
    not as the test server's admin role; the primary's pg_stat_replication shows it on the
    standby's slot, and the role, logged in to a database, reads none of its tables."""
    assert REPLICATION_ROLE != conninfo_to_dict(standby.primary_url)["user"]
    with psycopg.connect(standby.primary_url, autocommit=True) as primary:
        for _ in range(100):  # the walreceiver connects once the standby has started
            row = primary.execute(STREAMING_ROLE, [standby.slot]).fetchone()
            if row is not None:
                break
            time.sleep(0.1)
    assert (REPLICATION_ROLE, False, True, True, False, False, False, 0) == row, standby.log_tail()
    as_replicator = make_conninfo(
        database_url, user=REPLICATION_ROLE, password=REPLICATION_PASSWORD
    )
    with (
        psycopg.connect(as_replicator) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT count(*) FROM ticks")


async def test_prices_rankings_and_health_are_answered_from_the_standby(
    hot_api: httpx.AsyncClient, history_api: httpx.AsyncClient, history: str
) -> None:
    """/prices and /rankings answer from the standby as from the primary; /health says how
    far behind the standby is, and that the cache listens (on the primary)."""
    exchange, symbol = (await pairs(history))[0]
    for path in (f"/prices/{exchange}/{symbol}", "/rankings?limit=5", "/rankings?by=stdv"):
        from_standby, from_primary = await hot_api.get(path), await history_api.get(path)
        assert 200 == from_standby.status_code, from_standby.text
        assert from_primary.content == from_standby.content
    health = (await hot_api.get("/health")).json()
    assert "listening" == health["response_cache"]
    assert 0 <= health["replica_lag_seconds"] < 5
    assert None is (await history_api.get("/health")).json()["replica_lag_seconds"]


async def test_on_one_server_nothing_of_the_replica_runs(
    history: str, api_url: str, collector_url: str
) -> None:
    """With API_LISTEN_URL the same as DATABASE_URL (as unset), answers after a commit come
    without the replica's connections: no question about WAL positions is asked."""
    names = await pairs(history)
    exchange, symbol = names[0]
    async with serve_api(replica_settings(api_url, api_url)) as api:
        await until_cache_listens(api)
        at = HISTORY_END + timedelta(seconds=1)
        async with await psycopg.AsyncConnection.connect(collector_url) as collector:
            await commit_cycle(collector, names, at, 3000.0)
        assert at == await newest(api, exchange, symbol)
        assert 200 == (await api.get("/rankings?limit=1")).status_code
        health = (await api.get("/health")).json()
        async with await psycopg.AsyncConnection.connect(history) as conn:
            cursor = await conn.execute(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE 'datatracker-api%'"
            )
            names_seen = {row[0] for row in await cursor.fetchall()}
    assert None is health["replica_lag_seconds"]
    assert {"datatracker-api-cache"} <= names_seen
    assert set() == names_seen & {"datatracker-api-replica", "datatracker-api-cache-reads"}


@pytest.mark.parametrize("windows_mb", [256, 0], ids=["windows", "sql"])
async def test_a_request_after_a_commit_waits_for_the_standby_to_replay_it(
    history: str,
    api_url: str,
    standby_api_url: str,
    collector_url: str,
    delay_replay: Callable[[float], None],
    windows_mb: int,
) -> None:
    """With replay held back, a request made once a commit is visible on the primary waits
    until the standby has replayed it and shows it, although the standby, read at once,
    does not have it yet; from the windows and from SQL alike."""
    names = await pairs(history)
    exchange, symbol = names[0]
    settings = replica_settings(
        standby_api_url, api_url, api_windows_mb=windows_mb, api_replica_wait_seconds=10
    )
    async with serve_api(settings) as api:
        await until_cache_listens(api)
        await newest(api, exchange, symbol)  # the windows loaded (or not)
        delay_replay(APPLY_DELAY_SECONDS)
        at = HISTORY_END + timedelta(seconds=1)
        async with await psycopg.AsyncConnection.connect(collector_url) as collector:
            await commit_cycle(collector, names, at, 3000.0)
        began = time.monotonic()
        assert at > await standby_newest(standby_api_url)  # not replayed yet: stale without a wait
        assert at == await newest(api, exchange, symbol)
        waited = time.monotonic() - began
        rankings = await api.get("/rankings?limit=1")
    assert 200 == rankings.status_code
    assert APPLY_DELAY_SECONDS * 0.5 <= waited <= APPLY_DELAY_SECONDS + 3


async def test_a_standby_behind_longer_than_the_wait_answers_503_with_retry_after(
    history: str,
    api_url: str,
    standby_api_url: str,
    collector_url: str,
    delay_replay: Callable[[float], None],
) -> None:
    """With replay held back longer than API_REPLICA_WAIT_SECONDS, a request after a commit
    is answered 503 with Retry-After: 1 and a body saying the standby is behind (so is any
    read while the delay lasts: every commit on the primary, the listener's own included,
    reaches the standby that late); once replay is no longer held back, the same request
    shows the commit (once the standby has replayed the backlog: the shared test server's
    other databases write too)."""
    names = await pairs(history)
    exchange, symbol = names[0]
    settings = replica_settings(standby_api_url, api_url, api_replica_wait_seconds=1)
    async with serve_api(settings) as api:
        await until_cache_listens(api)
        await until_loaded(api, len(names), loads=1)
        delay_replay(LONG_APPLY_DELAY_SECONDS)
        at = HISTORY_END + timedelta(seconds=1)
        async with await psycopg.AsyncConnection.connect(collector_url) as collector:
            await commit_cycle(collector, names, at, 3000.0)
        assert at > await standby_newest(standby_api_url)  # replay is held back
        response = await api.get(f"/prices/{exchange}/{symbol}")
        assert 503 == response.status_code, response.text
        assert "1" == response.headers["retry-after"]
        assert "standby has not replayed" in response.json()["detail"]
        delay_replay(0)
        assert at == await newest_once_caught_up(api, exchange, symbol)
