"""Serve the S7 hoist stub on python-snap7's pure-Python S7 server, on loopback.

python-snap7's server is a different implementation of S7comm from the gateway's driver (which
frames S7comm itself, drivers/s7/wire.py), so every test against it is also an interop test.  The
stub's memory (firmware_stubs/s7_hoist.py) is written into the server's registered areas every
``tick_s`` (or on :meth:`S7Plc.advance` when ``tick_s`` is 0), under the server's area locks, so a
read never sees half a tick.  The server's threads never touch the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Self

from firmware_stubs.s7_hoist import S7Hoist

__all__ = ["S7Plc"]

logging.getLogger("snap7").setLevel(logging.CRITICAL)


class S7Plc:
    """The hoist's S7 CPU at ``host:port`` (port 0: a free port, see ``.port`` once entered)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 1, tick_s: float = 1.0,
                 pdu_size: int | None = None) -> None:
        from snap7.server import Server
        from snap7.type import SrvArea

        self.host, self.port, self.tick_s = host, port, tick_s
        self.stub = S7Hoist(seed)
        self.tick = 0
        self.server = Server(log=False)
        self.server.host = host
        self._areas: dict[tuple[str, int], bytearray] = {}
        kinds = {"DB": SrvArea.DB, "M": SrvArea.MK, "I": SrvArea.PE, "Q": SrvArea.PA}
        for (area, db), data in self.stub.memory(0).items():
            buf = self._areas[area, db] = bytearray(data)
            self.server.register_area(kinds[area], db, buf)
        self._task: asyncio.Task[None] | None = None

    def _write(self) -> None:
        from snap7.datatypes import S7Area

        wire = {"DB": S7Area.DB, "M": S7Area.MK, "I": S7Area.PE, "Q": S7Area.PA}
        for key, data in self.stub.memory(self.tick).items():
            lock = self.server.area_locks[wire[key[0]], key[1]]
            with lock:
                self._areas[key][:] = data

    def advance(self, ticks: int = 1) -> None:
        self.tick += ticks
        self._write()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.advance()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.server.start, self.port)
        sock = self.server.server_socket
        assert sock is not None
        self.port = sock.getsockname()[1]
        if self.tick_s > 0:
            self._task = asyncio.create_task(self._ticker(), name="s7-plc-ticker")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.server.stop)
