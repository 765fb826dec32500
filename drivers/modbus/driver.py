"""Modbus driver for TCP, RTU on a serial line and RTU over TCP: the only module (with hil/) importing pymodbus.

It does I/O only: connect, read the planned blocks, decode.  Cadence, retries, backoff and health
counters live in :mod:`gateway.runner`.  Devices on one serial port, or on one serial device server
(RTU over TCP), share one :class:`Line`: one connection, one request at a time, a silent gap before
each request.  Every request has its own timeout, counted from when the line is ours, so a dead unit
id delays the others on its line by at most its own timeout per attempt and never closes the
connection they use.  A Modbus TCP device always has a connection of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Self

from drivers.modbus.client import Connection, ExceptionResponse, FrameError, Framing
from drivers.modbus.config import ModbusDevice, ModbusRtuDevice, ModbusRtuTcpDevice, Table, line_key
from drivers.modbus.decode import BitDecoder, Decoder, Field
from drivers.modbus.plan import Block, gap_addresses, plan
from gateway.errors import ConnectError, ReadError
from gateway.point import Quality, SampleBatch, now_ns

__all__ = ["Line", "LinePool", "ModbusDriver", "ModbusTcpDriver"]

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

_EXCEPTION_NAMES = {
    1: "illegal_function",
    2: "illegal_data_address",
    3: "illegal_data_value",
    4: "server_device_failure",
    5: "acknowledge",
    6: "server_device_busy",
    8: "memory_parity_error",
    10: "gateway_path_unavailable",
    11: "gateway_target_failed_to_respond",
}


class Line:
    """One connection (TCP socket or serial port) and the devices polled over it."""

    def __init__(self, description: str, framing: Framing, frame_gap_s: float, opener: _Opener) -> None:
        self.description = description
        self.framing = framing
        self.frame_gap = frame_gap_s
        self._opener = opener
        self._open_lock = asyncio.Lock()
        self.conn: Connection | None = None
        self.users = 0
        self.opens = 0

    async def acquire(self) -> None:
        """Register a user; (re)open the connection if it is not open."""
        async with self._open_lock:
            if self.conn is None or not self.conn.is_open:
                conn = Connection(self.framing, self.frame_gap)
                await self._opener(conn)
                self.conn = conn
                self.opens += 1
            self.users += 1

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self.conn is not None:
            self.users = 0
            self.conn.close()
            self.conn = None

    def drop(self) -> None:
        """Close the connection (stream out of step); the next acquire reopens it."""
        if self.conn is not None:
            self.conn.close()


_Opener = Callable[[Connection], Awaitable[None]]


class LinePool:
    """The lines of one gateway: devices with the same serial port or RTU-over-TCP endpoint share one."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str, ...], Line] = {}

    def line_for(self, config: ModbusDevice) -> Line:
        key = line_key(config)
        if key is None:  # Modbus TCP: a connection per device
            return _line(config)
        line = self.lines.get(key)
        if line is None:
            line = self.lines[key] = _line(config)
        return line


def _line(config: ModbusDevice) -> Line:
    if isinstance(config, ModbusRtuDevice):
        return Line(f"serial port {config.port}", Framing.RTU, config.effective_frame_gap_s(), _serial_opener(config))
    framing = Framing.RTU if isinstance(config, ModbusRtuTcpDevice) else Framing.MBAP
    gap = config.frame_gap_ms / 1000 if isinstance(config, ModbusRtuTcpDevice) else 0.0
    return Line(f"{config.host}:{config.port}", framing, gap, _tcp_opener(config.host, config.port))


def _tcp_opener(host: str, port: int) -> _Opener:
    async def open_tcp(conn: Connection) -> None:
        await asyncio.get_running_loop().create_connection(lambda: conn, host, port)

    return open_tcp


def _serial_opener(cfg: ModbusRtuDevice) -> _Opener:
    async def open_serial(conn: Connection) -> None:
        from pymodbus.transport.serialtransport import create_serial_connection

        loop = asyncio.get_running_loop()
        await create_serial_connection(
            loop, lambda: conn, cfg.port, baudrate=cfg.baudrate, bytesize=cfg.bytesize, parity=cfg.parity,
            stopbits=cfg.stopbits,
        )
        for _ in range(100):  # the transport announces itself on a later loop iteration
            if conn.transport is not None:
                return
            await asyncio.sleep(0)
        raise OSError(f"serial port {cfg.port} did not open")

    return open_serial


class _Group:
    __slots__ = ("blocks", "interval_s", "name", "points")

    def __init__(self, name: str, interval_s: float, points: list[int]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.points = points  # positions in the device's point list
        self.blocks: list[tuple[Block, Decoder | BitDecoder]] = []


class ModbusDriver:
    def __init__(self, config: ModbusDevice, first_index: int, lines: LinePool | None = None) -> None:
        self.config = config
        self._first = first_index
        self.unbridgeable: set[tuple[Table, int]] = set()
        self.line = (lines or LinePool()).line_for(config)
        self.shared = line_key(config) is not None
        self.groups: dict[str, _Group] = {}
        for name, ms in config.group_intervals_ms().items():
            members = [i for i, p in enumerate(config.points) if (p.group or "") == name]
            self.groups[name] = _Group(name, ms / 1000, members)
        self._entered = False
        self.requests = 0  # requests sent, for benchmarks and diagnostics
        self._replan()

    def _replan(self) -> None:
        """Build blocks and their decoders per poll group; rerun when a bridged gap turned out unreadable."""
        config = self.config
        for group in self.groups.values():
            subset = [config.points[i] for i in group.points]
            group.blocks = []
            for block in plan(subset, config.max_gap, config.max_bit_gap, self.unbridgeable):
                # members are positions in `subset`: map them back to the device's point list
                members = tuple(group.points[m] for m in block.members)
                block = Block(block.table, block.address, block.count, members)
                fields = []
                width = 1 if block.table.is_bit else 2
                for member in members:
                    pt = config.points[member]
                    fields.append(
                        Field(
                            index=self._first + member,
                            offset=(pt.address - block.address) * width,
                            data_type=pt.data_type,
                            order=pt.byte_order or config.byte_order,
                            bit=pt.bit,
                            length=pt.length or 0,
                            string_order=pt.string_order,
                            encoding=pt.string_encoding or config.string_encoding,
                            enum=pt.enum,
                        )
                    )
                decoder: Decoder | BitDecoder = BitDecoder(fields) if block.table.is_bit else Decoder(fields)
                group.blocks.append((block, decoder))

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def requests_per_poll(self) -> int:
        """Requests of one poll of every group."""
        return sum(len(g.blocks) for g in self.groups.values())

    def schedules(self) -> list[tuple[float, Callable[[], Awaitable[SampleBatch]]]]:
        """(interval, read one group) per poll group, for the runner."""
        return [(g.interval_s, _bind(self.read_group, g.name)) for g in self.groups.values()]

    async def __aenter__(self) -> Self:
        try:
            await self.line.acquire()
        except OSError as err:
            raise ConnectError(self.config.name, f"cannot open {self.line.description}: {err}") from err
        self._entered = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._entered:
            self._entered = False
            self.line.release()

    async def read(self) -> SampleBatch:
        """One poll of every group."""
        out: SampleBatch = []
        for name in self.groups:
            out += await self.read_group(name)
        return out

    async def read_group(self, group: str) -> SampleBatch:
        """Every block of one poll group once.  An exception response spoils only its block's points."""
        conn = self.line.conn
        if conn is None or not self._entered:
            raise ConnectError(self.config.name, "not connected")
        cfg = self.config
        unit = cfg.unit_id
        timeout = cfg.timeout_ms / 1000
        first = self._first
        out: SampleBatch = []
        replan = False
        good = Quality.GOOD
        for block, decoder in self.groups[group].blocks:
            self.requests += 1
            try:
                async with conn.lock:  # the line is ours from here: the timeout starts now
                    ts = now_ns()
                    data = await conn.read(unit, block.table.function_code, block.address, block.count, timeout)
            except ExceptionResponse as err:
                reason = f"modbus_exception_{err.code}_{_EXCEPTION_NAMES.get(err.code, 'unknown')}"
                out.extend((first + m, ts, None, Quality.BAD, reason) for m in block.members)
                if err.code == 2:
                    gaps = gap_addresses(block, cfg.points)
                    if gaps - self.unbridgeable:
                        self.unbridgeable |= gaps
                        replan = True
                continue
            except TimeoutError as err:
                # a dead unit on a shared line must not close the connection the others use
                raise ReadError(self.name, f"no answer within {timeout:g} s", reason="timeout",
                                disconnect=not self.shared) from err
            except FrameError as err:
                if self.line.framing is Framing.MBAP:
                    self.line.drop()  # the TCP stream may be out of step
                raise ReadError(self.name, f"malformed response: {err}", reason="malformed_response") from err
            except (ConnectionError, OSError) as err:
                raise ReadError(self.name, f"connection lost: {err}", reason="disconnected", disconnect=True) from err
            if isinstance(decoder, BitDecoder):
                out += [(i, ts, v, good, None) for i, v, _ in decoder.decode_packed(data)]
            else:
                out += decoder.samples(data, ts)
        if replan:
            self._replan()
        return out


def _bind(read_group: Callable[[str], Awaitable[SampleBatch]], name: str) -> Callable[[], Awaitable[SampleBatch]]:
    def read() -> Awaitable[SampleBatch]:
        return read_group(name)

    return read


ModbusTcpDriver = ModbusDriver  # the name of the TCP-only first version
