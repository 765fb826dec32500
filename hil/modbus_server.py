"""Serve firmware stubs over a real pymodbus Modbus TCP server on loopback.

The register values advance one tick per ``tick_s`` (or on :meth:`SimulatedPlc.advance` when
``tick_s`` is 0, for tests that step the plant by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Self

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_stubs.gas_substation import HOLDING_REGISTERS, INPUT_REGISTERS, GasSubstation

__all__ = ["SimulatedPlc"]

_FC_HOLDING = 3
_FC_INPUT = 4


class SimulatedPlc:
    """A gas monitoring substation stub on ``host:port`` (port 0 picks a free port)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 1,
        unit_id: int = 1,
        tick_s: float = 1.0,
        stub: GasSubstation | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.tick_s = tick_s
        self.stub = stub or GasSubstation(seed)
        self.tick = 0
        self._server: ModbusTcpServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        if self.port == 0:
            self.port = _free_port(self.host)
        device = SimDevice(
            self.unit_id,
            simdata=(
                [SimData(0, values=[0], datatype=DataType.BITS)],  # coils (unused)
                [SimData(0, values=[0], datatype=DataType.BITS)],  # discrete inputs (unused)
                [SimData(0, values=self.stub.holding_registers(0), datatype=DataType.REGISTERS)],
                [SimData(0, values=self.stub.input_registers(0), datatype=DataType.REGISTERS)],
            ),
        )
        self._server = ModbusTcpServer([device], address=(self.host, self.port))
        self._tasks.append(asyncio.create_task(self._server.serve_forever()))
        await self._wait_listening()
        await self._publish()
        if self.tick_s > 0:
            self._tasks.append(asyncio.create_task(self._ticker()))

    async def _wait_listening(self) -> None:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            return
        raise RuntimeError(f"simulated PLC did not start listening on {self.host}:{self.port}")

    async def _publish(self) -> None:
        assert self._server is not None
        await self._server.async_setValues(
            self.unit_id, _FC_INPUT, 0, self.stub.input_registers(self.tick)[:INPUT_REGISTERS]
        )
        await self._server.async_setValues(
            self.unit_id, _FC_HOLDING, 0, self.stub.holding_registers(self.tick)[:HOLDING_REGISTERS]
        )

    async def advance(self, ticks: int = 1) -> None:
        self.tick += ticks
        await self._publish()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self.advance()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
