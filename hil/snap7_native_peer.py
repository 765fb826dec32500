"""The original Snap7 S7 server (C++, through node-snap7 in hil/node_snap7) serving the S7 hoist stub.

A third S7 implementation next to the driver's own framing and python-snap7's pure-Python server:
Snap7's C++ server is what most S7 tools have been tested against.  It runs as ``node server.js PORT``
on 127.0.0.1; the stub's memory is sent to it as hex lines (``DB 10 <hex>``), once per tick.
scripts/test.sh installs it (``npm ci`` and a node-gyp build of the native addon, from the bundled
Snap7 source: nothing is downloaded but the npm package).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Self

from firmware_stubs.s7_hoist import S7Hoist
from hil.services import free_port

__all__ = ["NODE_DIR", "NativeS7Plc", "PeerUnavailable"]

NODE_DIR = Path(__file__).resolve().parent / "node_snap7"
ADDON = NODE_DIR / "node_modules" / "node-snap7" / "build" / "Release" / "node_snap7.node"


class PeerUnavailable(RuntimeError):
    """node or the built node-snap7 addon is missing (scripts/test.sh installs it)."""


class NativeS7Plc:
    """The hoist on Snap7's C++ server; ``advance()`` moves the stub on and rewrites the areas."""

    def __init__(self, seed: int = 1) -> None:
        self.stub = S7Hoist(seed)
        self.tick = 0
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self.extra: dict[tuple[str, int], bytes] = {}  # more areas to serve, e.g. ("DB", 20): bytes

    async def _send(self, line: str) -> str:
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(line.encode() + b"\n")
        await self._proc.stdin.drain()
        return (await asyncio.wait_for(self._proc.stdout.readline(), 30)).decode().strip()

    async def _write_areas(self) -> None:
        for (area, index), data in {**self.stub.memory(self.tick), **self.extra}.items():
            answer = await self._send(f"{area} {index} {data.hex()}")
            if answer != "ok":
                raise PeerUnavailable(f"node-snap7 peer: {answer!r}")

    async def advance(self, ticks: int = 1) -> None:
        self.tick += ticks
        await self._write_areas()

    async def __aenter__(self) -> Self:
        node = shutil.which("node")
        if node is None:
            raise PeerUnavailable("node is not installed")
        if not ADDON.is_file():
            raise PeerUnavailable("node-snap7 is not built: see scripts/test.sh (hil/node_snap7)")
        for _ in range(5):  # a port another process takes between choosing and binding: try another
            self.port = free_port()
            self._proc = await asyncio.create_subprocess_exec(
                node, str(NODE_DIR / "server.js"), str(self.port), cwd=NODE_DIR,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            await self._write_areas()
            if (await self._send("start")).startswith("ready"):
                return self
            await self._stop()
        raise PeerUnavailable("node-snap7 peer did not start on a free port")

    async def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()
