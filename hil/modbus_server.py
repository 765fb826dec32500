"""Serve firmware stubs on real pymodbus servers on loopback: Modbus TCP, RTU over TCP, RTU on a serial port.

One server may carry several stubs at different unit ids: an RS-485 line with a fan, a pump and a
conveyor behind one serial device server, or one serial port (a socat pty in tests).  The register
values advance one tick per ``tick_s`` (or on :meth:`SimulatedPlc.advance` when ``tick_s`` is 0,
for tests that step the plant by hand).  :meth:`SimulatedPlc.silence` makes a unit id stop
answering (a dead outstation on the line), :meth:`SimulatedPlc.revive` brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Literal, Protocol, Self

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_stubs.gas_substation import GasSubstation
from firmware_stubs.register_map import Image
from hil.services import free_port

__all__ = ["SimulatedPlc", "StubLike", "Transport"]

Transport = Literal["tcp", "rtu_tcp", "rtu"]


class StubLike(Protocol):
    def image(self, tick: int) -> Image: ...


class SimulatedPlc:
    """Stubs on ``host:port`` (port 0 picks a free port) or, for ``transport="rtu"``, on ``serial_port``.

    Without ``units`` it is a gas monitoring substation (``seed``) at ``unit_id``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 1,
        unit_id: int = 1,
        tick_s: float = 1.0,
        units: Mapping[int, StubLike] | None = None,
        transport: Transport = "tcp",
        serial_port: str = "",
        baudrate: int = 19200,
        stub: GasSubstation | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.tick_s = tick_s
        self.stub = stub or GasSubstation(seed)
        self.units: dict[int, StubLike] = dict(units) if units else {unit_id: self.stub}
        self.transport = transport
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.tick = 0
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._silent: set[int] = set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _devices(self) -> list[SimDevice]:
        devices = []
        for unit, stub in sorted(self.units.items()):
            img = stub.image(self.tick)
            devices.append(
                SimDevice(
                    unit,
                    simdata=(
                        [SimData(0, values=img.coils or [False], datatype=DataType.BITS)],
                        [SimData(0, values=img.discrete_inputs or [False], datatype=DataType.BITS)],
                        [SimData(0, values=img.holding_registers or [0], datatype=DataType.REGISTERS)],
                        [SimData(0, values=img.input_registers or [0], datatype=DataType.REGISTERS)],
                    ),
                )
            )
        return devices

    async def start(self) -> None:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        if self.transport == "rtu":
            if not self.serial_port:
                raise ValueError("transport 'rtu' needs serial_port (e.g. one end of a socat pty pair)")
            self._server = ModbusSerialServer(
                self._devices(), framer=FramerType.RTU, port=self.serial_port, baudrate=self.baudrate,
                trace_packet=self._trace_packet,
            )
        else:
            if self.port == 0:
                self.port = free_port(self.host)
            framer = FramerType.RTU if self.transport == "rtu_tcp" else FramerType.SOCKET
            self._server = ModbusTcpServer(
                self._devices(), address=(self.host, self.port), framer=framer, trace_packet=self._trace_packet
            )
        await self._server.serve_forever(background=True)
        await self._publish()
        if self.tick_s > 0:
            self._tasks.append(asyncio.create_task(self._ticker()))

    async def _publish(self) -> None:
        assert self._server is not None
        for unit, stub in self.units.items():
            img = stub.image(self.tick)
            for fc, values in ((1, img.coils), (2, img.discrete_inputs), (3, img.holding_registers),
                               (4, img.input_registers)):
                if values:
                    await self._server.async_setValues(unit, fc, 0, values)

    async def advance(self, ticks: int = 1) -> None:
        self.tick += ticks
        await self._publish()

    def silence(self, unit: int) -> None:
        """The unit stops answering (requests to it time out), the others carry on."""
        self._silent.add(unit)

    def revive(self, unit: int) -> None:
        self._silent.discard(unit)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Swallow the answers of silenced units: nothing goes on the wire for them."""
        if sending and self._silent and data:
            unit = data[0] if self.transport != "tcp" else (data[6] if len(data) > 6 else -1)
            if unit in self._silent:
                return b""
        return data

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
