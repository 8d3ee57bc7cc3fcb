"""A hot standby of the test server for the session: `pg_basebackup -R` of the whole cluster
into a fresh directory under /tmp, started on a free port of 127.0.0.1 with the server
binaries of the primary's own version, run as the user `postgres` when this process is root;
stopped and removed at the session's end.

Made as README's "Reading from a replica" tells users to: pg_basebackup copies the cluster,
and the standby streams, as a role that may log in and replicate and nothing else
(REPLICATION_ROLE: no superuser, not the test server's admin role), which the session creates
with the admin connection if it is missing and sets to exactly that. Its password is a fixed
test one (REPLICATION_PASSWORD), like the services' roles' in tests/conftest.py: a role is the
whole cluster's, and the shared test servers run several sessions at once, so a password
changed by each session would fail another session's pg_basebackup between its two
connections, or its walreceiver's next reconnect. The password reaches pg_basebackup through
PGPASSWORD in its environment, never its command line; `-R` writes it into the
`primary_conninfo` of the standby's postgresql.auto.conf (readable by `postgres` alone, under
the standby's directory, removed at the end), where the walreceiver reads it.

The test server must be a local cluster that streams WAL (`wal_level` replica or logical, a
free WAL sender and replication slot) and lets a role with REPLICATION replicate from
127.0.0.1 with its password: the shared test servers do (scripts/local-db.sh's clusters keep
the `host replication all 127.0.0.1/32 scram-sha-256` line that initdb writes under Debian's
pg_createcluster).
Nothing of the primary's configuration is changed. The standby streams through a replication
slot of its own, made by pg_basebackup and dropped at the end: without one, a primary that
writes a lot of WAL (other sessions' tests) may remove a segment before the standby has it,
and the standby stops for good (`requested WAL segment ... has already been removed`, seen on
the shared 5434). The slot's name holds its creation time: a session that died without
dropping its slot leaves one that the next session drops once it is an hour old (a slot left
behind would keep every WAL segment on the server from then on). Each test's database is
cloned on the primary and reaches the standby by replay: `until_replayed` waits for it.
"""

import asyncio
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from api.replica import QUERIES, reached
from tests.api_server import free_port
from tests.private_cluster import as_owner

# What a hot standby needs at least as large as its primary's, or it stops replaying.
AT_LEAST_THE_PRIMARYS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)
# How long the standby may take to start, or to replay a position.
START_SECONDS = 120
REPLAY_SECONDS = 60
# The standby's replication slot: this prefix, then its creation time (Unix seconds) and a
# random part; an inactive one older than STALE_SLOT_SECONDS is a dead session's.
SLOT_PREFIX = "datatracker_test_standby_"
STALE_SLOT_SECONDS = 3600
# The role the standby is copied and streams as (README's `replicator`), and its test password.
REPLICATION_ROLE = "datatracker_test_replicator"
REPLICATION_PASSWORD = "datatracker_test_replicator"
# pg_advisory_xact_lock's key: sessions setting up the replication role take turns ("dtrp").
REPLICATION_ROLE_LOCK = 0x64_74_72_70


@dataclass(frozen=True)
class Standby:
    """A running standby of the primary at `primary_url` (admin), on 127.0.0.1:`port`,
    streaming through the replication slot `slot`."""

    directory: Path
    port: int
    primary_url: str
    slot: str

    def url(self, conninfo: str) -> str:
        """`conninfo` (a URL of the primary: any database, any role) pointing at the standby."""
        return make_conninfo(conninfo, host="127.0.0.1", port=str(self.port))

    @property
    def admin_url(self) -> str:
        return self.url(self.primary_url)

    def set_apply_delay(self, seconds: float) -> None:
        """Replay each commit `seconds` after the primary made it (recovery_min_apply_delay)."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{int(seconds * 1000)}ms'")
            conn.execute("SELECT pg_reload_conf()")
            wanted = f"{int(seconds * 1000)}ms"
            for _ in range(100):  # the reload is asynchronous: wait until the setting shows it
                shown = conn.execute("SHOW recovery_min_apply_delay").fetchone()
                if shown and normalised_ms(shown[0]) == normalised_ms(wanted):
                    return
                time.sleep(0.02)
            raise AssertionError(f"recovery_min_apply_delay not set to {wanted}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the standby logged."""
        log = self.directory / "server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def until_replayed(self, conninfo: str) -> None:
        """Wait until the standby has replayed everything the primary holds now, and
        `conninfo`'s database (made on the primary) accepts connections on the standby."""
        async with await psycopg.AsyncConnection.connect(self.primary_url) as primary:
            cursor = await primary.execute(QUERIES["primary_position"])
            target = int((await cursor.fetchone() or (0,))[0])
        deadline, seen = time.monotonic() + REPLAY_SECONDS, None
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url(conninfo)) as conn:
                    cursor = await conn.execute(QUERIES["replayed_position"])
                    seen = await cursor.fetchone()
                    if seen is not None and reached(float(seen[1]), target):
                        return
            except psycopg.OperationalError:  # the database is not there yet
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the standby did not replay position {target} within {REPLAY_SECONDS} s"
                    f" (last seen: {seen or 'no connection'});"
                    f" its log ends:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.05)


def normalised_ms(setting: str) -> int:
    """A duration setting as PostgreSQL shows it (`3s`, `500ms`, `0`), in milliseconds."""
    for unit, factor in (("ms", 1), ("s", 1000), ("min", 60_000)):
        if setting.endswith(unit) and setting[: -len(unit)].isdigit():
            return int(setting[: -len(unit)]) * factor
    return int(setting)


def primary_settings(admin_url: str) -> tuple[str, dict[str, str]]:
    """The primary's server binaries directory and the settings its standby copies."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'").fetchone()
        copied = {
            name: str((conn.execute(f"SHOW {name}").fetchone() or ("",))[0])
            for name in (*AT_LEAST_THE_PRIMARYS, "timescaledb.license")
        }
    if row is None:
        raise RuntimeError("the test server does not say where its binaries are")
    return str(row[0]), copied


def make_replication_role(admin_url: str) -> None:
    """Create REPLICATION_ROLE if it is missing and make it what README's `replicator` is:
    LOGIN and REPLICATION with its password, and no other attribute. Sessions take turns (two
    ALTER ROLE of one role at once may fail with `tuple concurrently updated`)."""
    role = sql.Identifier(REPLICATION_ROLE)
    with psycopg.connect(admin_url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [REPLICATION_ROLE_LOCK])
        exists = conn.execute(
            "SELECT FROM pg_roles WHERE rolname = %s", [REPLICATION_ROLE]
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE ROLE {}").format(role))
        conn.execute(
            sql.SQL(
                "ALTER ROLE {} WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE"
                " NOBYPASSRLS PASSWORD {}"
            ).format(role, sql.Literal(REPLICATION_PASSWORD))
        )


def drop_stale_slots(admin_url: str) -> None:
    """Drop the inactive replication slots that sessions which died left behind."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        names = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE NOT active AND slot_name LIKE %s",
            [SLOT_PREFIX + "%"],
        ).fetchall()
        for (name,) in names:
            made = name.removeprefix(SLOT_PREFIX).split("_")[0]
            if made.isdigit() and time.time() - int(made) > STALE_SLOT_SECONDS:
                conn.execute("SELECT pg_drop_replication_slot(%s)", [name])


def drop_slot(admin_url: str, name: str) -> None:
    """Drop the replication slot `name` if it exists, once the primary has seen the standby
    go (at most 10 s: a slot in use cannot be dropped)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for _ in range(100):
            try:
                conn.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE slot_name = %s",
                    [name],
                )
                return
            except psycopg.errors.ObjectInUse:
                time.sleep(0.1)
        raise AssertionError(f"replication slot {name} still in use: drop it by hand")


@contextmanager
def standby_of(admin_url: str) -> Iterator[Standby]:
    """A hot standby of the cluster at `admin_url` (a superuser's URL), copied and streaming
    as REPLICATION_ROLE, removed on the way out."""
    bindir, copied = primary_settings(admin_url)
    make_replication_role(admin_url)
    directory = Path(tempfile.mkdtemp(prefix="datatracker-standby-"))
    data = directory / "data"
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    slot = f"{SLOT_PREFIX}{int(time.time())}_{secrets.token_hex(4)}"
    standby = Standby(directory, free_port(), admin_url, slot)
    params = conninfo_to_dict(admin_url)
    # The replication role's password for pg_basebackup, which -R writes into primary_conninfo.
    environment = {**os.environ, "PGPASSWORD": REPLICATION_PASSWORD}
    drop_stale_slots(admin_url)
    try:
        basebackup = [
            f"{bindir}/pg_basebackup",
            "--pgdata",
            str(data),
            "--write-recovery-conf",  # -R: primary_conninfo, primary_slot_name, standby.signal
            "--create-slot",
            f"--slot={slot}",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
            "--host",
            str(params.get("host", "127.0.0.1")),
            "--port",
            str(params.get("port", 5432)),
            "--username",
            REPLICATION_ROLE,
        ]
        subprocess.run(as_owner(basebackup), check=True, capture_output=True, env=environment)
        settings = {
            "port": str(standby.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{directory}'",
            "shared_preload_libraries": "'timescaledb'",
            "timescaledb.telemetry_level": "off",
            "hot_standby": "on",
            "fsync": "off",  # a throwaway standby
            **{name: f"'{value}'" for name, value in copied.items()},
        }
        # The primary's configuration files may live outside its data directory (Debian's
        # do): the standby gets its own.
        (data / "postgresql.conf").write_text(
            "".join(f"{name} = {value}\n" for name, value in settings.items())
        )
        (data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        for name in ("postgresql.conf", "pg_hba.conf"):
            if os.geteuid() == 0:
                shutil.chown(data / name, "postgres", "postgres")
        pg_ctl = [f"{bindir}/pg_ctl", "-D", str(data), "-l", str(directory / "server.log")]
        subprocess.run(
            as_owner([*pg_ctl, "-w", "-t", str(START_SECONDS), "start"]),
            check=True,
            capture_output=True,
        )
        yield standby
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                as_owner([f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"]),
                check=False,
                capture_output=True,
            )
        drop_slot(admin_url, slot)
        shutil.rmtree(directory, ignore_errors=True)
