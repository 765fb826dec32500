"""A loopback TCP proxy that injects network faults between the gateway and a device.

``freeze()`` stops forwarding without closing anything (a cable pulled behind a switch: the socket
looks open, nothing arrives); ``thaw()`` resumes; ``cut()`` drops every connection (RST-like).
``partition()`` is a freeze in which new connections never reach the target either (a blackholed
route: the SYN is lost; here the connection is accepted, read and discarded, never forwarded, even
after ``thaw()``), as an uplink outage behind a 4G router or a microwave link looks.  The ``thaw()``
of a partition closes the connections that were open through it, without forwarding what was
sent into the blackhole: their ends gave up on them meanwhile (the gateway's PUBACK timeout, the
broker's keepalive), and a batch the gateway has since counted as dropped must not arrive through a
connection it closed long ago.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

__all__ = ["FaultProxy"]


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._partitioned = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        if self._partitioned:
            self.cut()  # before forwarding resumes: the held data of the old connections is dropped
        self._partitioned = False
        self._flowing.set()

    def partition(self) -> None:
        self._partitioned = True
        self._flowing.clear()

    def cut(self) -> None:
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._partitioned:  # this connection never got through: swallow it until the client gives up
            try:
                while await reader.read(65536):
                    pass
            except OSError:
                pass
            finally:
                writer.close()
            return
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)
