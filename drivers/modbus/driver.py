"""Modbus driver for TCP, RTU on a serial line and RTU over TCP (the lean client of :mod:`.client`).

It does I/O only: connect, read the planned blocks, decode.  Cadence, retries, backoff and health
counters live in :mod:`gateway.runner`.  Devices on one serial port, or on one serial device server
(RTU over TCP), share one :class:`Line` (:mod:`gateway.core.line`, which the DL/T 645 driver's lines
are too): one connection, one request at a time, a silent gap before each request.  Every request has
its own timeout, counted from when the line is ours, so a dead unit id delays the others on its line
by at most its own timeout per attempt and never closes the connection they use.  A Modbus TCP device
always has a connection of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Self

from drivers.modbus.client import Connection, Framing
from drivers.modbus.config import (
    ByteOrder,
    DataType,
    ModbusDevice,
    ModbusPoint,
    ModbusRtuDevice,
    ModbusRtuTcpDevice,
    StringOrder,
    Table,
    line_key,
)
from drivers.modbus.decode import BitDecoder, Decoder, Field
from drivers.modbus.framing import ExceptionResponse, FrameError
from drivers.modbus.plan import Block, Span, plan
from gateway.core.errors import ConnectError, ReadError
from gateway.core.line import Line as SharedLine
from gateway.core.line import LinePool as SharedLines
from gateway.core.line import Opener, serial_opener, tcp_opener
from gateway.core.point import Quality, SampleBatch, index_int, now_ns
from gateway.core.values import StringEncoding

__all__ = ["DeviceLayout", "Line", "LinePool", "ModbusDriver", "ModbusTcpDriver", "PointLayout", "lean_device"]

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


class Line(SharedLine[Connection, "ModbusDriver"]):
    """One connection (TCP socket or serial port) with its framing, and the devices polled over it."""

    def __init__(self, description: str, framing: Framing, frame_gap_s: float, opener: Opener[Connection]) -> None:
        super().__init__(description, frame_gap_s, lambda: Connection(framing, frame_gap_s), opener)
        self.framing = framing


@dataclass(frozen=True, slots=True, eq=False)
class PointLayout:
    """What the driver needs of one configured point, all the time (planning, decoding, narrowing
    down a refused address), with the device's defaults applied.  Equal layouts are stored once
    (:meth:`LinePool.layout`): a plant repeats one register map over many devices of a type, and the
    parsed point models (about 1.2 KB a point) are released once the gateway is built (#17)."""

    table: Table
    address: int
    registers: int
    data_type: DataType
    byte_order: ByteOrder
    bit: int | None
    length: int
    string_order: StringOrder
    string_encoding: StringEncoding
    enum: Mapping[int, str] | None
    group: str


class LinePool(SharedLines[ModbusDevice, Line]):
    """The lines of one gateway: devices with the same serial port or RTU-over-TCP endpoint share one;
    a Modbus TCP device has a connection of its own.  Also where the devices' equal point layouts are
    stored once."""

    def __init__(self) -> None:
        super().__init__(line_key, _line)
        self._layouts: dict[tuple[object, ...], PointLayout] = {}
        self._maps: dict[tuple[PointLayout, ...], tuple[PointLayout, ...]] = {}

    def layout(self, pt: ModbusPoint, dev: ModbusDevice) -> PointLayout:
        order = pt.byte_order or dev.byte_order
        encoding = pt.string_encoding or dev.string_encoding
        enum = tuple(sorted(pt.enum.items())) if pt.enum is not None else None
        key = (pt.table, pt.address, pt.registers, pt.data_type, order, pt.bit, pt.length or 0, pt.string_order,
               encoding, enum, pt.group or "")
        found = self._layouts.get(key)
        if found is None:
            found = self._layouts[key] = PointLayout(
                pt.table, pt.address, pt.registers, pt.data_type, order, pt.bit, pt.length or 0, pt.string_order,
                encoding, dict(enum) if enum is not None else None, pt.group or "")
        return found

    def register_map(self, layouts: tuple[PointLayout, ...]) -> tuple[PointLayout, ...]:
        """One tuple for the devices with the same layouts (a register map repeated over a plant's
        devices of a type): a slot a point less for each device after the first."""
        return self._maps.setdefault(layouts, layouts)


def _line(config: ModbusDevice) -> Line:
    if isinstance(config, ModbusRtuDevice):
        # pymodbus's serial transport (on pyserial), only where a device is on a serial port: 1.5 MB
        # resident that a gateway of Modbus TCP devices does not carry (#17)
        from pymodbus.transport.serialtransport import create_serial_connection

        opener = serial_opener(config.port, create_serial_connection, baudrate=config.baudrate,
                               parity=config.parity, stopbits=config.stopbits, bytesize=config.bytesize)
        return Line(f"serial port {config.port}", Framing.RTU, config.effective_frame_gap_s(), opener)
    framing = Framing.RTU if isinstance(config, ModbusRtuTcpDevice) else Framing.MBAP
    gap = config.frame_gap_ms / 1000 if isinstance(config, ModbusRtuTcpDevice) else 0.0
    return Line(f"{config.host}:{config.port}", framing, gap, tcp_opener(config.host, config.port))


class _Group:
    __slots__ = ("blocks", "interval_s", "name", "points")

    def __init__(self, name: str, interval_s: float, points: Sequence[int]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.points = points  # positions in the device's point list
        self.blocks: list[tuple[Block, Decoder | BitDecoder]] = []


@dataclass(frozen=True, slots=True)
class DeviceLayout:
    """What a :class:`ModbusDriver` keeps of a device's points (picklable): a layout per point and the
    interval of each poll group.  Made where the config is parsed (:func:`lean_device`), which may be
    another process than the one polling."""

    points: tuple[PointLayout, ...]
    intervals_ms: Mapping[str, int]


def lean_device(config: ModbusDevice, lines: LinePool | None = None) -> tuple[ModbusDevice, DeviceLayout]:
    """The device's settings without its points, and its :class:`DeviceLayout` (equal layouts stored
    once in ``lines``)."""
    pool = lines or LinePool()
    layouts = pool.register_map(tuple(pool.layout(p, config) for p in config.points))
    layout = DeviceLayout(layouts, config.group_intervals_ms())
    return config.model_copy(update={"points": []}), layout


class ModbusDriver:
    def __init__(self, config: ModbusDevice, first_index: int, lines: LinePool | None = None,
                 layout: DeviceLayout | None = None) -> None:
        """Keeps the device's settings and a :class:`PointLayout` per point, not the point models.
        ``layout``: the points' layouts made beforehand (:func:`lean_device`); ``config`` is then the
        device without its points."""
        pool = lines or LinePool()
        if layout is None:
            config, layout = lean_device(config, pool)
        elif config.points:
            raise ValueError(f"device {config.name}: a layout made beforehand goes with the device without its points")
        self.points: tuple[PointLayout, ...] = layout.points
        intervals = layout.intervals_ms
        self.config = config
        self._first = first_index
        self.unbridgeable: set[tuple[Table, int]] = set()
        self.line = pool.line_for(config)
        self.shared = line_key(config) is not None
        self.groups: dict[str, _Group] = {}
        for name, ms in intervals.items():
            members: Sequence[int] = [i for i, p in enumerate(self.points) if p.group == name]
            if members and list(range(members[0], members[-1] + 1)) == members:
                members = range(members[0], members[-1] + 1)  # the common case: a slot a point less
            self.groups[name] = _Group(name, ms / 1000, members)
        self._entered = False
        self.requests = 0  # requests sent, for benchmarks and diagnostics
        self.answering = False  # the last request was answered (a live unit, whose polls others must not delay)
        self._due: dict[str, float] = {}  # poll group -> when its next poll falls due (loop time)
        self._replan()

    def _replan(self) -> None:
        """Build blocks and their decoders per poll group; rerun when an address turned out unreadable."""
        config = self.config
        for group in self.groups.values():
            subset = [self.points[i] for i in group.points]
            group.blocks = []
            for block in plan(subset, config.max_gap, config.max_bit_gap, self.unbridgeable):
                # members are positions in `subset`: map them back to the device's point list
                members = tuple(group.points[m] for m in block.members)
                block = Block(block.table, block.address, block.count, members)
                group.blocks.append((block, self._decoder(block)))

    def _decoder(self, block: Block) -> Decoder | BitDecoder:
        fields = []
        width = 1 if block.table.is_bit else 2
        for member in block.members:
            pt = self.points[member]
            fields.append(
                Field(
                    index=index_int(self._first + member),  # the point table's int object
                    offset=(pt.address - block.address) * width,
                    data_type=pt.data_type,
                    order=pt.byte_order,
                    bit=pt.bit,
                    length=pt.length,
                    string_order=pt.string_order,
                    encoding=pt.string_encoding,
                    enum=pt.enum,
                )
            )
        return BitDecoder(fields) if block.table.is_bit else Decoder(fields)

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
        await self.line.enter(self, self.config.name)
        self._entered = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._entered:
            self._entered = False
            self.line.leave(self)

    @property
    def next_due(self) -> float:
        """When this unit's next poll falls due (event-loop time; inf before its first poll)."""
        return min(self._due.values(), default=math.inf)

    async def wait_quiet(self, limit_s: float) -> bool:
        """For a suspended unit: wait (at most ``limit_s``) for a moment when one attempt of ours
        (a timeout, plus the frame gap) delays no answering unit's poll on the shared line."""
        if not self.shared:
            return True
        return await self.line.wait_quiet(self, self.config.timeout_ms / 1000, limit_s)

    async def read(self) -> SampleBatch:
        """One poll of every group."""
        out: SampleBatch = []
        for name in self.groups:
            out += await self.read_group(name)
        return out

    async def read_group(self, group: str) -> SampleBatch:
        """Every block of one poll group once.  An exception response spoils only its block's points;
        "illegal data address" on a block of several points is narrowed down at once (see
        :meth:`_narrow`), so the readable points of the block are good in this very poll."""
        conn = self.line.conn
        if conn is None or not self._entered:
            raise ConnectError(self.config.name, "not connected")
        g = self.groups[group]
        self._due[group] = asyncio.get_running_loop().time() + g.interval_s  # the runner calls us when due
        out: SampleBatch = []
        known = len(self.unbridgeable)
        try:
            for block, decoder in g.blocks:
                try:
                    ts, data = await self._request(conn, block)
                except ExceptionResponse as err:
                    if err.code == 2:
                        await self._narrow(conn, block.table, _clusters(block, self.points), out)
                    else:
                        out.extend(_refused(block, self._first, err))
                    continue
                out += _samples(decoder, data, ts)
            self.answering = True
        finally:
            if len(self.unbridgeable) != known:
                self._replan()
        return out

    async def _request(self, conn: Connection, block: Block) -> tuple[int, bytes]:
        """One read; the source time and the answer's data bytes.  Transport failures become ReadError."""
        self.requests += 1
        timeout = self.config.timeout_ms / 1000
        try:
            async with conn.lock:  # the line is ours from here: the timeout starts now
                ts = now_ns()
                data = await conn.read(self.config.unit_id, block.table.function_code, block.address, block.count,
                                       timeout)
        except TimeoutError as err:
            self.answering = False
            # a dead unit on a shared line must not close the connection the others use
            raise ReadError(self.name, f"no answer within {timeout:g} s", reason="timeout",
                            disconnect=not self.shared) from err
        except FrameError as err:
            if self.line.framing is Framing.MBAP:
                self.line.drop()  # the TCP stream may be out of step
            raise ReadError(self.name, f"malformed response: {err}", reason="malformed_response") from err
        except (ConnectionError, OSError) as err:
            raise ReadError(self.name, f"connection lost: {err}", reason="disconnected", disconnect=True) from err
        return ts, data

    async def _narrow(self, conn: Connection, table: Table, clusters: list[_Cluster], out: SampleBatch) -> None:
        """``clusters`` read together were refused with "illegal data address": find the addresses.

        Bisection over the clusters (runs of overlapping points, no gap inside): a half that reads is
        decoded into ``out``; a refused half is narrowed further.  When both halves read, the refused
        address lies in the gap between them, which no block will bridge again; a refused single
        cluster is tried one distinct span at a time, and a refused span marks its registers, so that
        point (and views of exactly its registers) is read on its own from now on and every other
        point of the block stays good.  Costs about 2 log2(n) requests, once.
        """
        if len(clusters) > 1:
            mid = len(clusters) // 2
            left, right = clusters[:mid], clusters[mid:]
            left_read = await self._attempt(conn, table, left, out)
            right_read = await self._attempt(conn, table, right, out)
            if left_read and right_read:
                gap = range(max(c.hi for c in left), right[0].lo)
                # empty gap: the device refuses only the combined read; nothing to learn, every point was read
                self.unbridgeable |= {(table, a) for a in gap}
            return
        (cluster,) = clusters
        spans: dict[tuple[int, int], list[int]] = {}
        points = self.points
        for m in cluster.members:
            spans.setdefault((points[m].address, points[m].address + points[m].registers), []).append(m)
        if len(spans) == 1:
            span = {(table, a) for a in range(cluster.lo, cluster.hi)}
            if not span & self.unbridgeable:  # new: find the refused registers once; known: nothing to learn
                refused = await self._refused_addresses(conn, table, cluster.lo, cluster.hi)
                self.unbridgeable |= {(table, a) for a in refused} or span
            block = Block(table, cluster.lo, cluster.hi - cluster.lo, tuple(cluster.members))
            out.extend(_refused(block, self._first, ExceptionResponse(2)))
            return
        for (lo, hi), members in spans.items():
            await self._attempt(conn, table, [_Cluster(lo, hi, members)], out)

    async def _refused_addresses(self, conn: Connection, table: Table, lo: int, hi: int) -> set[int]:
        """The addresses in lo..hi that a refused multi-register point really lacks (bisection), so
        that its views of the other registers stay readable with their neighbours."""
        if hi - lo == 1:
            return {lo}
        found: set[int] = set()
        mid = (lo + hi) // 2
        for a, b in ((lo, mid), (mid, hi)):
            try:
                await self._request(conn, Block(table, a, b - a, ()))
            except ExceptionResponse as err:
                if err.code == 2:
                    found |= await self._refused_addresses(conn, table, a, b)
        return found

    async def _attempt(self, conn: Connection, table: Table, clusters: list[_Cluster], out: SampleBatch) -> bool:
        """Read ``clusters`` as one block; False when refused with "illegal data address" (then narrowed)."""
        lo, hi = clusters[0].lo, max(c.hi for c in clusters)
        block = Block(table, lo, hi - lo, tuple(m for c in clusters for m in c.members))
        try:
            ts, data = await self._request(conn, block)
        except ExceptionResponse as err:
            if err.code != 2:
                out.extend(_refused(block, self._first, err))
                return True
            await self._narrow(conn, table, clusters, out)
            return False
        out += _samples(self._decoder(block), data, ts)
        return True


class _Cluster:
    """A run of points whose registers overlap (no unused address inside): the unit of narrowing."""

    __slots__ = ("hi", "lo", "members")

    def __init__(self, lo: int, hi: int, members: list[int]) -> None:
        self.lo, self.hi, self.members = lo, hi, members


def _clusters(block: Block, points: Sequence[Span]) -> list[_Cluster]:
    out: list[_Cluster] = []
    for lo, hi, m in sorted((points[m].address, points[m].address + points[m].registers, m) for m in block.members):
        if out and lo < out[-1].hi:
            out[-1].hi = max(out[-1].hi, hi)
            out[-1].members.append(m)
        else:
            out.append(_Cluster(lo, hi, [m]))
    return out


def _refused(block: Block, first: int, err: ExceptionResponse) -> SampleBatch:
    reason = f"modbus_exception_{err.code}_{_EXCEPTION_NAMES.get(err.code, 'unknown')}"
    ts = now_ns()
    return [(first + m, ts, None, Quality.BAD, reason) for m in block.members]


def _samples(decoder: Decoder | BitDecoder, data: bytes, ts: int) -> SampleBatch:
    if isinstance(decoder, BitDecoder):
        good = Quality.GOOD
        return [(i, ts, v, good, None) for i, v, _ in decoder.decode_packed(data)]
    return decoder.samples(data, ts)


def _bind(read_group: Callable[[str], Awaitable[SampleBatch]], name: str) -> Callable[[], Awaitable[SampleBatch]]:
    def read() -> Awaitable[SampleBatch]:
        return read_group(name)

    return read


ModbusTcpDriver = ModbusDriver  # the name of the TCP-only first version
