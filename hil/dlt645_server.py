"""Serve DL/T 645 meter stubs on loopback TCP (a serial device server in transparent mode) or a serial port.

:class:`MeterBus` is one RS-485 line of meters as a pure responder (request bytes in, answer bytes
out); :class:`SimulatedMeters` serves it.  Faults per meter address make the bad-input cases real
bytes on a real line: ``silent`` (no answer), ``wrong_address`` (answers as another meter),
``bad_checksum``, ``garbage`` (noise, no frame), ``truncated`` (half a frame), ``abnormal`` (0xD1
"no such data" for everything).  The readings advance one tick per ``tick_s`` (0: by hand with
:meth:`SimulatedMeters.advance`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal, Self

from drivers.dlt645.codec import (
    Control,
    Deframer,
    encode_bcd,
    encode_frame,
    format_address,
    parse_address,
)
from drivers.dlt645.dataids import lookup
from firmware_stubs.energy_meters import EnergyMeter

__all__ = ["Fault", "MeterBus", "SimulatedMeters"]

Fault = Literal["silent", "wrong_address", "bad_checksum", "garbage", "truncated", "abnormal"]
NO_SUCH_DATA = 0x02


class MeterBus:
    """Meters sharing one line: a request addressed to one of them gets its answer, others get none."""

    def __init__(self, meters: list[EnergyMeter], preamble: int = 4) -> None:
        self.meters = {parse_address(m.address): m for m in meters}
        self.preamble = preamble
        self.tick = 0
        self.faults: dict[str, Fault] = {}
        self.requests = 0

    def answer(self, control: int, address: bytes, data: bytes) -> bytes | None:
        """The answer to one request frame (None: nobody on the line answers)."""
        meter = self.meters.get(address)
        if meter is None:
            return None
        self.requests += 1
        fault = self.faults.get(meter.address)
        if fault == "silent":
            return None
        if fault == "garbage":
            return bytes(range(0x20, 0x40))
        if control == Control.READ and len(data) >= 4:
            di = int.from_bytes(data[:4], "little")
            value = meter.read(di, self.tick)
            item = lookup(di)
            if fault == "abnormal" or value is None or item is None:
                out = encode_frame(address, Control.READ_ERROR, bytes((NO_SUCH_DATA,)), self.preamble)
            else:
                out = encode_frame(address, Control.READ_OK, data[:4] + encode_bcd(value, item.fmt), self.preamble)
        elif control == Control.READ_FOLLOWUP:
            out = encode_frame(address, Control.FOLLOWUP_ERROR, bytes((NO_SUCH_DATA,)), self.preamble)
        else:
            return None  # writes, time sync, broadcast: not simulated
        if fault == "wrong_address":
            other = bytes(reversed(address))  # another meter's address
            wire = bytearray(out)
            p = self.preamble
            wire[p + 1 : p + 7] = other
            wire[-2] = sum(wire[p:-2]) & 0xFF
            return bytes(wire)
        if fault == "bad_checksum":
            return out[:-2] + bytes(((out[-2] + 1) & 0xFF, out[-1]))
        if fault == "truncated":
            return out[: len(out) // 2]
        return out


class _Session(asyncio.Protocol):
    """One connection (TCP client, or the serial port): its own deframer, answers from the bus."""

    def __init__(self, bus: MeterBus) -> None:
        self.bus = bus
        self.deframer = Deframer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for frame in self.deframer.feed(data):
            if frame.is_response:
                continue
            answer = self.bus.answer(frame.control, frame.address, frame.data)
            if answer is not None and self.transport is not None:
                self.transport.write(answer)


class SimulatedMeters:
    """Meters on 127.0.0.1:``port`` (0: a free port) or on ``serial_port`` (``transport="serial"``)."""

    def __init__(
        self, meters: list[EnergyMeter], *, transport: Literal["tcp", "serial"] = "tcp", host: str = "127.0.0.1",
        port: int = 0, serial_port: str = "", tick_s: float = 1.0, preamble: int = 4,
    ) -> None:
        self.bus = MeterBus(meters, preamble)
        self.transport = transport
        self.host = host
        self.port = port
        self.serial_port = serial_port
        self.tick_s = tick_s
        self._server: asyncio.Server | None = None
        self._serial: asyncio.BaseTransport | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._sessions: list[_Session] = []

    @property
    def meters(self) -> dict[str, EnergyMeter]:
        return {format_address(a): m for a, m in self.bus.meters.items()}

    def advance(self, ticks: int = 1) -> None:
        self.bus.tick += ticks

    def fault(self, address: str, fault: Fault | None) -> None:
        """Make one meter misbehave (None: heal it)."""
        address = format_address(parse_address(address))
        if fault is None:
            self.bus.faults.pop(address, None)
        else:
            self.bus.faults[address] = fault

    def expected(self, address: str, di: int, tick: int | None = None) -> float | None:
        """What the meter at ``address`` reads for ``di`` at ``tick`` (now by default): the oracle."""
        return self.meters[format_address(parse_address(address))].read(di, self.bus.tick if tick is None else tick)

    def _session(self) -> _Session:
        s = _Session(self.bus)
        self._sessions.append(s)
        return s

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        if self.transport == "serial":
            from pymodbus.transport.serialtransport import create_serial_connection

            self._serial, _ = await create_serial_connection(
                loop, self._session, self.serial_port, baudrate=2400, bytesize=8, parity="N", stopbits=1,
            )
        else:
            self._server = await loop.create_server(self._session, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        if self.tick_s > 0:
            self._ticker = asyncio.create_task(self._tick())
        return self

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.bus.tick += 1

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._server is not None:
            self._server.close()
            for s in self._sessions:
                if s.transport is not None:
                    s.transport.close()
            await self._server.wait_closed()
        if self._serial is not None:
            self._serial.close()



async def _serve_bench(meters_per_line: int, ports: list[int]) -> None:
    """``python -m hil.dlt645_server METERS PORT...``: one line of meters per port (for `edgegw bench dlt645`);
    prints ``ready``, serves until stdin closes."""
    import sys

    from firmware_stubs.energy_meters import plant_meters

    async with contextlib.AsyncExitStack() as stack:
        for n, port in enumerate(ports):
            await stack.enter_async_context(
                SimulatedMeters(plant_meters(seed=n + 1, count=meters_per_line), port=port, tick_s=1.0)
            )
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    import sys

    asyncio.run(_serve_bench(int(sys.argv[1]), [int(p) for p in sys.argv[2:]]))
