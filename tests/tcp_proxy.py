"""A TCP proxy on 127.0.0.1 that tests can cut and restore: a database outage on demand."""

import asyncio
import contextlib
from typing import Self

from psycopg.conninfo import make_conninfo


class TcpProxy:
    """Forwards connections to `target`; `cut()` drops them all and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        """Listen (again) on 127.0.0.1, on the same port as before if there was one."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def route(self, conninfo: str) -> str:
        """`conninfo` with its host and port replaced by this proxy's."""
        return make_conninfo(conninfo, host="127.0.0.1", port=str(self.port))

    async def cut(self) -> None:
        """Stop listening and close every open connection, as a stopped server would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        """Accept connections again."""
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pipe = asyncio.current_task()
        assert pipe is not None
        self._pipes.add(pipe)
        ends = [writer]
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
            ends.append(upstream_writer)
            await asyncio.gather(
                self._copy(reader, upstream_writer), self._copy(upstream_reader, writer)
            )
        except OSError:
            pass  # the target refused: the client sees its connection closed, as it would
        finally:
            # Also when `cut()` cancels this pipe mid-connect: an accepted socket left open
            # would be garbage-collected later, in whichever test runs then.
            for end in ends:
                end.close()
            self._pipes.discard(pipe)

    @staticmethod
    async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()
