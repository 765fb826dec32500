"""DL/T 645-2007 driver on RS-485 or through a serial device server (transparent TCP): I/O only.

The framing is :mod:`drivers.dlt645.codec` (pure); this module moves bytes.  Meters on one serial
port, or behind one serial device server, share one :class:`Line`: one connection, one request at a
time, a silent gap before each request.  Each request has its own timeout, counted from when the
line is ours, so a dead meter delays the others by at most its own timeout per attempt and never
closes the connection they use; after ``suspend_after_timeouts`` the runner suspends it and tries it
only in quiet moments of the line (:meth:`Dlt645Driver.wait_quiet`).

The connection, the line and how it is opened are :mod:`gateway.core.line`'s, shared with the
Modbus RTU transport (the serial port is opened with pymodbus's asyncio transport on pyserial).
"""

from __future__ import annotations

import asyncio
import math
from typing import Self

from pymodbus.transport.serialtransport import create_serial_connection

from drivers.dlt645.codec import (
    Control,
    Deframer,
    Frame,
    MeterError,
    ValueFormat,
    decode_bcd,
    format_address,
    read_followup_request,
    read_request,
)
from drivers.dlt645.config import Dlt645Device, Dlt645SerialDevice, line_key
from gateway.core.errors import ConnectError, ReadError
from gateway.core.line import Line as SharedLine
from gateway.core.line import LineConnection, Opener, serial_opener, tcp_opener
from gateway.core.line import LinePool as SharedLines
from gateway.core.point import Quality, SampleBatch, now_ns

__all__ = ["Dlt645Driver", "Line", "LinePool", "Link", "lean_device"]

# what a meter's point needs, with its defaults applied: (data identifier, its 4 bytes, value format)
_Read = tuple[int, bytes, ValueFormat]


def points_form(config: Dlt645Device) -> list[_Read]:
    """The meter's reads, in point order: picklable, so that ``edgegw run``'s config-reading child hands
    over this instead of the point models (:func:`lean_device`); equal value formats are stored once."""
    formats: dict[ValueFormat, ValueFormat] = {}
    return [(p.di_value, p.di_value.to_bytes(4, "little"), formats.setdefault(f := p.value_format(), f))
            for p in config.points]


def lean_device(config: Dlt645Device) -> tuple[Dlt645Device, list[_Read]]:
    """The meter without its points, and the compact form the driver is made from (``DriverSpec.lean``)."""
    return config.model_copy(update={"points": []}), points_form(config)

MAX_FOLLOWUPS = 16  # follow-up frames of one answer (the values read here need none; long ones a few)


class Link(LineConnection[Frame]):
    """One transport (serial port or TCP socket) and the frames arriving on it; one request at a time."""

    def __init__(self, frame_gap_s: float) -> None:
        super().__init__(frame_gap_s)
        self.deframer = Deframer()
        self._address = b""
        self._function = 0
        self._di = b""
        self.skipped_at_start = 0
        self.bad_checksums_at_start = 0
        self.foreign: list[bytes] = []  # addresses of answers from other meters during the current request
        # dropped_frames: late or foreign answers, requests echoed by the adapter

    def data_received(self, data: bytes) -> None:
        for frame in self.deframer.feed(data):
            self._offer(frame)

    def _offer(self, frame: Frame) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done() or not frame.is_response:
            self.dropped_frames += 1  # late, unasked, or our own request echoed by the RS-485 adapter
            return
        if frame.address != self._address:
            self.dropped_frames += 1
            self.foreign.append(frame.address)
            return
        if (frame.control & 0x1F) != self._function:
            self.dropped_frames += 1
            return
        if not frame.is_abnormal and frame.data[:4] != self._di:
            self.dropped_frames += 1  # a late answer to an earlier request of this meter
            return
        waiter.set_result(frame)

    async def exchange(self, request: bytes, address: bytes, function: int, di: bytes, timeout: float) -> Frame:
        """Send a request and return the meter's answer to it.  Callers hold :attr:`lock`.

        Raises TimeoutError (no answer from this meter: the deframer's counters and :attr:`foreign`
        say whether something else came) and ConnectionError."""

        def expect() -> bytes:
            self.deframer.clear()  # bytes left over from an earlier exchange are not part of this answer
            self.skipped_at_start, self.bad_checksums_at_start = self.deframer.skipped, self.deframer.bad_checksums
            self.foreign = []
            self._address, self._function, self._di = address, function, di
            return request

        return await self._transact(expect, timeout)


class Line(SharedLine[Link, "Dlt645Driver"]):
    """One connection and the meters polled over it."""

    def __init__(self, description: str, frame_gap_s: float, opener: Opener[Link]) -> None:
        super().__init__(description, frame_gap_s, lambda: Link(frame_gap_s), opener)


class LinePool(SharedLines[Dlt645Device, Line]):
    """The DL/T 645 lines of one gateway: meters with the same serial port or device server share one."""

    def __init__(self) -> None:
        super().__init__(line_key, _line)


def _line(config: Dlt645Device) -> Line:
    gap = config.frame_gap_ms / 1000
    if isinstance(config, Dlt645SerialDevice):
        opener = serial_opener(config.port, create_serial_connection, baudrate=config.baudrate,
                               parity=config.parity, stopbits=config.stopbits)
        return Line(f"serial port {config.port}", gap, opener)
    return Line(f"{config.host}:{config.port}", gap, tcp_opener(config.host, config.port))


class Dlt645Driver:
    """One meter: every point is one read (0x11) of its data identifier, in turn, on the meter's line."""

    def __init__(self, config: Dlt645Device, first_index: int, lines: LinePool | None = None, *,
                 form: list[_Read] | None = None) -> None:
        """``form``: :func:`lean_device`'s compact form of the points when ``config`` is the meter
        without them (``edgegw run`` reads its config in a child process and hands over only that);
        otherwise made here from ``config.points``, which are then let go: the reads are what the
        points need, the parsed point models (~1.2 KB a point) go (#17)."""
        if form is None:
            config, form = lean_device(config)
        self.config = config
        self._first = first_index
        self.line = (lines or LinePool()).line_for(config)
        self._address = config.address_bytes
        self._reads: list[tuple[int, int, bytes, ValueFormat]] = [
            (first_index + i, di, di_bytes, fmt) for i, (di, di_bytes, fmt) in enumerate(form)
        ]
        self._entered = False
        self.requests = 0
        self.answering = False
        self.next_due = math.inf  # when this meter's next poll falls due (loop time), for wait_quiet

    @property
    def name(self) -> str:
        return self.config.name

    async def __aenter__(self) -> Self:
        await self.line.enter(self, self.config.name)
        self._entered = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._entered:
            self._entered = False
            self.line.leave(self)

    async def wait_quiet(self, limit_s: float) -> bool:
        return await self.line.wait_quiet(self, self.config.timeout_ms / 1000, limit_s)

    async def read(self) -> SampleBatch:
        """Every point once.  An abnormal answer or an undecodable value spoils only its point; a meter
        that does not answer fails the poll (the runner retries, then reports the meter down)."""
        link = self.line.conn
        if link is None or not self._entered:
            raise ConnectError(self.config.name, "not connected")
        self.next_due = asyncio.get_running_loop().time() + self.config.poll_interval_ms / 1000
        out: SampleBatch = []
        bad = Quality.BAD
        for index, di, di_wire, fmt in self._reads:
            try:
                ts, data = await self._read_di(link, di, di_wire)
            except MeterError as err:
                out.append((index, now_ns(), None, bad, err.reason))
                continue
            try:
                value = decode_bcd(memoryview(data)[4:], fmt)
            except ValueError:
                out.append((index, ts, None, bad, "bad_bcd" if len(data) - 4 >= fmt.nbytes else "malformed_response"))
                continue
            out.append((index, ts, value, Quality.GOOD, None))
        self.answering = True
        return out

    async def _read_di(self, link: Link, di: int, di_wire: bytes) -> tuple[int, bytes]:
        """One data identifier: the source time and the answer's data (DI first), follow-ups joined."""
        preamble = self.config.preamble_bytes
        ts, frame = await self._exchange(link, read_request(self._address, di, preamble), Control.READ, di_wire)
        data = frame.data
        seq = 0
        while frame.has_followup and seq < MAX_FOLLOWUPS:
            seq += 1
            request = read_followup_request(self._address, di, seq, preamble)
            _, frame = await self._exchange(link, request, Control.READ_FOLLOWUP, di_wire)
            data += frame.data[4:-1]  # DI, the data, and the follow-up frame's sequence number
        return ts, data

    async def _exchange(self, link: Link, request: bytes, function: int, di_wire: bytes) -> tuple[int, Frame]:
        self.requests += 1
        timeout = self.config.timeout_ms / 1000
        try:
            async with link.lock:  # the line is ours from here: the timeout starts now
                ts = now_ns()
                frame = await link.exchange(request, self._address, function, di_wire, timeout)
        except TimeoutError as err:
            self.answering = False
            raise self._silence(link, timeout) from err
        except (ConnectionError, OSError) as err:
            raise ReadError(self.name, f"connection lost: {err}", reason="disconnected", disconnect=True) from err
        if frame.is_abnormal:
            raise MeterError(frame.data[0] if frame.data else 0)
        return ts, frame

    def _silence(self, link: Link, timeout: float) -> ReadError:
        """What a request without an answer from this meter met: another meter's answer, frames with a
        bad checksum, bytes that were no frame, or nothing at all."""
        if link.foreign:
            other = format_address(link.foreign[-1])
            return ReadError(self.name, f"meter {other} answered a request to {self.config.address} (check the "
                             "address on the nameplate)", reason="wrong_address")
        if link.deframer.bad_checksums > link.bad_checksums_at_start:
            return ReadError(self.name, f"only frames with a bad checksum within {timeout:g} s (line noise, "
                             "baud rate or parity)", reason="bad_checksum")
        if link.deframer.skipped > link.skipped_at_start or link.deframer.pending:
            return ReadError(self.name, f"no complete frame within {timeout:g} s, only stray bytes (baud rate, "
                             "parity, a second master on the line)", reason="malformed_response")
        return ReadError(self.name, f"no answer within {timeout:g} s", reason="timeout")
