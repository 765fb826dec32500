"""A lean asyncio Modbus client for reads (FC 1-4): MBAP framing over TCP, RTU framing over TCP or serial.

Why not pymodbus's client: profiling ``edgegw bench modbus`` showed its per-request machinery (PDU
objects, per-register decoding into a list that we packed back into bytes, retry and disconnect
bookkeeping shared across unit ids) dominating the gateway's CPU.  This client hands the response's
data bytes straight to the block decoder, and lets the caller decide what a timeout means: on a
shared RS-485 line one dead unit id must not close the connection the live ones use.

It follows the Modbus Application Protocol v1.1b3 and the Modbus over Serial Line v1.02 specs and
trusts nothing it receives: a response with another transaction id (a late answer to a request
that timed out) or, on RTU, another unit id or a bad CRC is dropped; a wrong function code, byte
count or protocol id is a :class:`FrameError`.  One request is outstanding per connection; callers
serialise with :attr:`Connection.lock` (the shared-line discipline).
"""

from __future__ import annotations

import asyncio
import enum
import struct
import time

__all__ = ["Connection", "ExceptionResponse", "FrameError", "Framing", "crc16"]


class Framing(enum.Enum):
    MBAP = "mbap"  # Modbus TCP: 7-byte header with transaction id, no CRC
    RTU = "rtu"  # unit id + PDU + CRC-16, on a serial line or tunnelled through TCP


class ExceptionResponse(Exception):
    """The device answered with an exception code (illegal data address, busy, ...)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exception code {code}")
        self.code = code


class FrameError(Exception):
    """A response that breaks the spec (wrong function code, byte count, protocol id, unit id)."""


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Modbus CRC-16 (polynomial 0xA001, initial 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


_REQUEST = struct.Struct(">BHH")  # function code, address, count
_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
_MBAP_REQUEST = struct.Struct(">HHHBBHH")


class Connection(asyncio.Protocol):
    """One transport (TCP socket or serial port) and its framing; reads only."""

    def __init__(self, framing: Framing, frame_gap_s: float = 0.0) -> None:
        self.framing = framing
        self.frame_gap = frame_gap_s
        self.lock = asyncio.Lock()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.Event()
        self._buf = bytearray()
        self._waiter: asyncio.Future[bytes] | None = None
        self._expect: tuple[int, int, int] = (0, 0, 0)  # (transaction id or unit id, function code, data bytes)
        self._tid = 0
        self._unit = 0
        self._idle_since = 0.0
        self.dropped_frames = 0  # late or foreign answers discarded

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closed.set()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"connection lost: {exc or 'closed by peer'}"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.dropped_frames += 1  # nobody is waiting: a late answer; drop it
            return
        self._buf += data
        if self.framing is Framing.MBAP:
            self._parse_mbap()
        else:
            self._parse_rtu()

    # -- requests ------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def read(self, unit: int, function: int, address: int, count: int, timeout: float) -> bytes:
        """Send one read request and return the response's data bytes (registers or packed bits).

        Callers hold :attr:`lock`.  Raises ExceptionResponse, FrameError, TimeoutError, ConnectionError.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionError("not connected")
        nbytes = 2 * count if function in (3, 4) else (count + 7) // 8
        if self.frame_gap:
            wait = self._idle_since + self.frame_gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        self._buf.clear()
        if self.framing is Framing.MBAP:
            self._tid = tid = (self._tid + 1) & 0xFFFF
            self._expect = (tid, function, nbytes)
            self._unit = unit
            frame = _MBAP_REQUEST.pack(tid, 0, 6, unit, function, address, count)
        else:
            self._expect = (unit, function, nbytes)
            body = bytes((unit,)) + _REQUEST.pack(function, address, count)
            crc = crc16(body)
            frame = body + bytes((crc & 0xFF, crc >> 8))
        self._waiter = waiter
        transport.write(frame)
        handle = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            handle.cancel()
            self._waiter = None
            self._idle_since = time.monotonic()

    # -- framing -------------------------------------------------------------------------------
    def _finish(self, result: bytes | BaseException) -> None:
        waiter = self._waiter
        self._buf.clear()
        if waiter is None or waiter.done():
            return
        if isinstance(result, BaseException):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)

    def _parse_mbap(self) -> None:
        buf = self._buf
        while len(buf) >= 7:
            tid, proto, length, unit = _MBAP.unpack_from(buf)
            if length < 2 or length > 254:
                self._finish(FrameError(f"MBAP length {length} out of range"))
                return
            end = 6 + length
            if len(buf) < end:
                return
            want_tid, function, nbytes = self._expect
            if tid != want_tid:  # a late answer to an earlier request: drop that frame only
                self.dropped_frames += 1
                del buf[:end]
                continue
            if proto != 0:
                self._finish(FrameError(f"protocol id {proto}, not 0"))
                return
            if unit != self._unit:
                self._finish(FrameError(f"answer from unit id {unit}, asked {self._unit}"))
                return
            self._finish(self._pdu(bytes(buf[7:end]), function, nbytes))
            return

    def _parse_rtu(self) -> None:
        """Find a CRC-valid frame from our unit; then the PDU decides (a wrong function is a FrameError)."""
        buf = self._buf
        unit, function, nbytes = self._expect
        while len(buf) >= 5:
            fc = buf[1]
            if fc & 0x80:
                size = 5  # an exception response
            elif fc in (1, 2, 3, 4):
                size = 5 + buf[2]  # a read response: unit, function, byte count, data, CRC
            else:
                size = 0  # garbage, or a frame we cannot size
            if size and len(buf) < size:
                return
            if size == 0 or crc16(memoryview(buf)[: size - 2]) != buf[size - 2] | buf[size - 1] << 8:
                # no CRC-valid frame starts here: resynchronise on the next byte
                self.dropped_frames += 1
                del buf[:1]
                continue
            if buf[0] != unit:  # a frame for or from another unit id on the line
                self.dropped_frames += 1
                del buf[:size]
                continue
            self._finish(self._pdu(bytes(buf[1 : size - 2]), function, nbytes))
            return

    @staticmethod
    def _pdu(pdu: bytes, function: int, nbytes: int) -> bytes | BaseException:
        fc = pdu[0]
        if fc == function | 0x80:
            return ExceptionResponse(pdu[1]) if len(pdu) == 2 else FrameError("malformed exception response")
        if fc != function:
            return FrameError(f"function code {fc} in the answer, asked {function}")
        if len(pdu) < 2 or pdu[1] != nbytes or len(pdu) != 2 + nbytes:
            return FrameError(f"byte count {pdu[1] if len(pdu) > 1 else '-'} / {len(pdu) - 2} bytes, expected {nbytes}")
        return pdu[2:]


def _expire(waiter: asyncio.Future[bytes]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no answer"))
