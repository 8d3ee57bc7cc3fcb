"""A TCP proxy on 127.0.0.1 that tests can cut and restore: a database outage on demand."""

import asyncio
import contextlib
import socket
from typing import Self

from psycopg.conninfo import make_conninfo


class TcpProxy:
    """Forwards connections to `target`; `cut()` drops them all and refuses new ones.

    Plain sockets, accepted in a reader callback: every socket the proxy opens is in `_sockets`
    from the moment it exists, so a cut closes each one, even a connection accepted an instant
    before whose pipe has not begun (asyncio's streams server leaves such a socket to the
    garbage collector on Python 3.11, and its ResourceWarning fails whichever test runs then).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        """Listen (again) on 127.0.0.1, on the same port as before if there was one."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.setblocking(False)
        self._listener, self.port = listener, listener.getsockname()[1]
        asyncio.get_running_loop().add_reader(listener, self._accept)

    def route(self, conninfo: str) -> str:
        """`conninfo` with its host and port replaced by this proxy's."""
        return make_conninfo(conninfo, host="127.0.0.1", port=str(self.port))

    def refuse(self) -> None:
        """Stop listening: new connections are refused, open ones go on."""
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener)
            self._listener.close()
            self._listener = None

    async def cut(self) -> None:
        """Stop listening and close every open connection, as a stopped server would."""
        self.refuse()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for end in self._sockets:
            end.close()
        self._sockets.clear()

    async def restore(self) -> None:
        """Accept connections again."""
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cut()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        client.setblocking(False)
        self._sockets.add(client)
        pipe = asyncio.get_running_loop().create_task(self._pipe(client))
        self._pipes.add(pipe)
        pipe.add_done_callback(self._pipes.discard)

    async def _pipe(self, client: socket.socket) -> None:
        upstream = socket.socket()
        upstream.setblocking(False)
        self._sockets.add(upstream)
        try:
            await asyncio.get_running_loop().sock_connect(upstream, self._target)
            await asyncio.gather(self._copy(client, upstream), self._copy(upstream, client))
        except OSError:
            pass  # the target refused: the client sees its connection closed, as it would
        finally:
            for end in (client, upstream):
                end.close()
                self._sockets.discard(end)

    @staticmethod
    async def _copy(source: socket.socket, sink: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while data := await loop.sock_recv(source, 65536):
                await loop.sock_sendall(sink, data)
            sink.shutdown(socket.SHUT_WR)
