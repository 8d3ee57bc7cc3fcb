"""A connection pool that remembers the database is down.

psycopg_pool on its own retries a failed connection with a doubling pause (1, 2, 4 … 64 s,
for up to `reconnect_timeout`, 5 minutes by default) and lets every request wait its whole
timeout meanwhile: after a 60 s outage the next attempt could come a minute after the
database was back, and each request took the full wait before its 503. Here the pool gives
up a failed connection at once (`reconnect_timeout=0`) and starts a probe; when the probe
cannot connect either, the circuit opens, and while it is open every request is refused at
once with `DatabaseDown`. The probe connects every `PROBE_SECONDS` and, once it succeeds,
closes the circuit and refills the pool with fresh connections.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

# How often the probe tries to connect while the database is away.
PROBE_SECONDS = 0.5
# How long one probe may take to connect (libpq's least connect_timeout).
PROBE_TIMEOUT_SECONDS = 2

Connection = AsyncConnection[TupleRow]


class DatabaseDown(psycopg.OperationalError):
    """Raised without waiting while the circuit is open: the database was found unreachable
    and no probe has reached it since. An OperationalError, handled as a lost connection."""


class CircuitPool(AsyncConnectionPool[Connection]):
    """An AsyncConnectionPool that refuses at once while the database is known to be down.

    `on_down(reason)` is called once when the circuit opens, `on_up(seconds)` once when a
    probe reaches the database again (the seconds it was down); each service logs its line.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        on_down: Callable[[str], None] | None = None,
        on_up: Callable[[float], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(conninfo, reconnect_timeout=0.0, check=self._check_or_sweep, **kwargs)
        self._connect_kwargs: dict[str, Any] = dict(kwargs.get("kwargs") or {})
        self._on_down = on_down
        self._on_up = on_up
        self._down_since: float | None = None
        self._reason = ""
        self._probe: asyncio.Task[None] | None = None
        # Resolved when the circuit opens: getconn calls waiting for a connection give up.
        self._circuit_open: asyncio.Future[None] | None = None
        self._returning: set[asyncio.Future[None]] = set()

    @property
    def down(self) -> bool:
        """Whether the circuit is open: the database was found down and not reached since."""
        return self._down_since is not None

    async def getconn(self, timeout: float | None = None) -> Connection:  # noqa: ASYNC109
        """A connection as AsyncConnectionPool gives one; DatabaseDown at once while the
        circuit is open, or as soon as it opens while this call waits."""
        if self._down_since is not None:
            raise DatabaseDown(self._reason)
        if self._circuit_open is None or self._circuit_open.done():
            self._circuit_open = asyncio.get_running_loop().create_future()
        # Waited for beside the circuit, never cancelled: psycopg_pool would lose a
        # connection handed to a cancelled waiter. One that comes late is given back.
        getting = asyncio.ensure_future(super().getconn(timeout))
        try:
            await asyncio.wait((getting, self._circuit_open), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getting.done():
                getting.add_done_callback(self._give_back)
        if not getting.done():
            raise DatabaseDown(self._reason)
        try:
            return getting.result()
        except PoolTimeout:
            # Busy, or connecting hangs (a lost network rather than a stopped server).
            self._start_probe()
            raise

    def _give_back(self, getting: "asyncio.Future[Connection]") -> None:
        if not getting.cancelled() and getting.exception() is None:
            self._returning.add(task := asyncio.ensure_future(self.putconn(getting.result())))
            task.add_done_callback(self._returning.discard)

    async def reconnect_failed(self) -> None:
        """psycopg_pool could not open a connection: find out whether the database is gone."""
        self._start_probe()

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Stop the probe, then close as AsyncConnectionPool does."""
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        await super().close(timeout)

    async def _check_or_sweep(self, conn: Connection) -> None:
        """The check of a connection before it is handed out. When one is broken, the
        database went away or restarted and the others are likely broken too: check them all
        now and replace the broken ones, rather than find them one request at a time with
        psycopg_pool's doubling pause between two."""
        try:
            await self.check_connection(conn)
        except Exception:
            await self.check()
            raise

    def _start_probe(self) -> None:
        if self._closed or (self._probe is not None and not self._probe.done()):
            return
        self._probe = asyncio.create_task(self._probe_until_up(), name=f"{self.name}-probe")

    async def _probe_until_up(self) -> None:
        """Connect until the database answers, opening the circuit on the first failure;
        then close it and refill the pool."""
        kwargs = {**self._connect_kwargs, "connect_timeout": PROBE_TIMEOUT_SECONDS}
        while True:
            try:
                conn = await AsyncConnection.connect(str(self.conninfo), **kwargs)
            except psycopg.Error as error:
                self._trip(error)
                await asyncio.sleep(PROBE_SECONDS)
                continue
            await conn.close()
            break
        if self._down_since is not None:
            down_for = time.monotonic() - self._down_since
            self._down_since = None
            if self._on_up is not None:
                self._on_up(down_for)
        # Idle connections broken by the outage out, fresh ones in (psycopg_pool connects
        # them in its workers), before requests find them.
        await self.check()

    def _trip(self, error: psycopg.Error) -> None:
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        lines = str(error).strip().splitlines()
        self._reason = lines[0] if lines else type(error).__name__
        if self._on_down is not None:
            self._on_down(self._reason)
        if self._circuit_open is not None and not self._circuit_open.done():
            self._circuit_open.set_result(None)
