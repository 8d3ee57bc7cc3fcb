"""The tests' TCP proxy: a cut closes every socket it accepted, even one still connecting."""

import asyncio
import gc
import warnings

from tests.tcp_proxy import TcpProxy


async def test_a_cut_mid_connect_leaves_no_accepted_socket_open() -> None:
    target = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    proxy = TcpProxy("127.0.0.1", target.sockets[0].getsockname()[1])
    await proxy.start()
    clients = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(20)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        await proxy.cut()  # the pipes are still connecting to the target
        for _, writer in clients:
            writer.close()
        target.close()
        await target.wait_closed()
        await asyncio.sleep(0.1)
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


async def test_a_cut_as_connections_are_accepted_leaves_none_open() -> None:
    target = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    proxy = TcpProxy("127.0.0.1", target.sockets[0].getsockname()[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for turns in range(8):  # cut after 0-7 turns of the loop: some pipes not yet begun
            await proxy.start()
            connecting = [
                asyncio.ensure_future(asyncio.open_connection("127.0.0.1", proxy.port))
                for _ in range(20)
            ]
            for _ in range(turns):
                await asyncio.sleep(0)
            await proxy.cut()
            for opened in await asyncio.gather(*connecting, return_exceptions=True):
                if isinstance(opened, tuple):
                    opened[1].close()
        target.close()
        await target.wait_closed()
        await asyncio.sleep(0.1)
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
