"""The psycopg connection pool both services use, and waiting for the database."""

import asyncio
import logging
import re
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

# `user:secret@` in a URL, with or without its scheme (or a mistyped one: `postgresql//`).
_URL_PASSWORD = re.compile(r"([^\s\"'/@:=]+):[^\s\"'@/]+@")
# `password=secret` in a key=value string, quoted or not (and libpq's other secrets).
_KEY_PASSWORD = re.compile(
    r"(?i)\b((?:ssl)?password\s*=\s*|oauth_client_secret\s*=\s*|scram_\w+_key\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'?|[^\s\"]+)"
)


def redact_dsn(text: str) -> str:
    """`text` with every password of a libpq URL or key=value string in it replaced by ***,
    for log lines and error messages (psycopg's parse errors quote the connection string)."""
    return _KEY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


def create_pool(
    conninfo: str, *, max_size: int, name: str, timeout: float = 30.0
) -> AsyncConnectionPool:
    """A pool created closed: the service opens it in its lifespan and closes it on the way out.

    `timeout` bounds how long a caller waits for a connection (PoolTimeout after it).
    """
    # Times come back in UTC, as the API shows them; psycopg also reads UTC timestamps about
    # twice as fast as those of a named zone, even 'Etc/UTC'. Added to the URL's own options.
    options = [conninfo_to_dict(conninfo).get("options"), "-c TimeZone=UTC"]
    return AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        open=False,
        name=name,
        timeout=timeout,
        # A connection broken by a database restart is replaced, not handed out.
        check=AsyncConnectionPool.check_connection,
        kwargs={
            "autocommit": True,
            "application_name": f"datatracker-{name}",
            "options": " ".join(str(option) for option in options if option),
        },
    )


async def wait_for_database(conninfo: str, *, give_up_after: float | None = None) -> None:
    """Return once the database accepts a connection, saying once that it is waiting.

    Raises the last connection error when `give_up_after` seconds pass first.
    """
    deadline = None if give_up_after is None else time.monotonic() + give_up_after
    waiting = False
    while True:
        try:
            connection = await psycopg.AsyncConnection.connect(conninfo, connect_timeout=5)
        except psycopg.OperationalError as error:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            if not waiting:
                log.warning(
                    "waiting for the database: %s", redact_dsn(str(error).strip().splitlines()[0])
                )
                waiting = True
            await asyncio.sleep(1)
            continue
        await connection.close()
        if waiting:
            log.info("database is answering")
        return
