"""Modbus framing without I/O: requests built as bytes; bytes in, frames out.

Modbus TCP (MBAP, Modbus Messaging on TCP/IP v1.0b): a 7-byte header (transaction id, protocol id
0, length, unit id) and the PDU; the length field delimits the frame, so the stream is cut exactly,
and a length outside 2..254 means the stream cannot be followed (:class:`FrameError`).

Modbus RTU (Modbus over Serial Line v1.02): unit id, PDU, CRC-16; nothing delimits a frame in a
byte stream (a serial port or RTU tunnelled through TCP), so its length comes from the function code
(and, for reads, the byte count), and the CRC says whether a frame really starts there.  Bytes that
start no CRC-valid frame (line noise, a partial frame from before a reconnect, an echo) are skipped
one at a time until one does: the framer resynchronises on its own.

Nothing here touches a socket, a clock or an event loop: :mod:`drivers.modbus.client` feeds the
bytes the transport delivers and sends the bytes built here; tests feed bytes directly
(tests/test_modbus_framing.py).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Literal, NamedTuple

__all__ = [
    "READ_FUNCTIONS",
    "ExceptionResponse",
    "FrameError",
    "MbapFrame",
    "MbapFramer",
    "RtuFrame",
    "RtuFramer",
    "crc16",
    "mbap_request",
    "read_data_bytes",
    "read_response_data",
    "rtu_frame",
    "rtu_request",
]

READ_FUNCTIONS = frozenset({1, 2, 3, 4})  # coils, discrete inputs, holding registers, input registers


class ExceptionResponse(Exception):
    """The device answered with an exception code (illegal data address, busy, ...)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exception code {code}")
        self.code = code


class FrameError(Exception):
    """A frame that breaks the spec (wrong function code, byte count, protocol id, unit id, length)."""


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


# ---------------------------------------------------------------------------------- requests
_REQUEST = struct.Struct(">BBHH")  # unit id, function code, address, count
_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
_MBAP_REQUEST = struct.Struct(">HHHBBHH")


def _check_read(unit: int, function: int, address: int, count: int) -> None:
    if (
        function not in READ_FUNCTIONS or not 0 <= unit <= 255 or not 0 <= address <= 0xFFFF
        or not 1 <= count <= (125 if function >= 3 else 2000)  # the spec's maxima per request
    ):
        raise ValueError(
            f"not a valid read request: unit id {unit}, function {function} (1-4), address {address}, "
            f"count {count} (1..125 registers or 1..2000 bits)"
        )


def mbap_request(tid: int, unit: int, function: int, address: int, count: int) -> bytes:
    """A Modbus TCP read request (function 1-4) with transaction id ``tid``."""
    _check_read(unit, function, address, count)
    return _MBAP_REQUEST.pack(tid & 0xFFFF, 0, 6, unit, function, address, count)


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """Unit id + PDU + CRC-16 (low byte first)."""
    body = bytes((unit,)) + pdu
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def rtu_request(unit: int, function: int, address: int, count: int) -> bytes:
    """A Modbus RTU read request (function 1-4): 8 bytes with the CRC."""
    _check_read(unit, function, address, count)
    body = _REQUEST.pack(unit, function, address, count)
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def read_data_bytes(function: int, count: int) -> int:
    """The data bytes a read response carries: 2 per register, 1 per 8 bits (rounded up)."""
    return 2 * count if function in (3, 4) else (count + 7) // 8


def read_response_data(pdu: bytes, function: int, nbytes: int) -> bytes:
    """The data of a read response PDU, checked against the request: raises ExceptionResponse (the
    device said no) or FrameError (the answer is not one to this request)."""
    fc = pdu[0] if pdu else -1
    if fc == function | 0x80:
        if len(pdu) == 2:
            raise ExceptionResponse(pdu[1])
        raise FrameError("malformed exception response")
    if fc != function:
        raise FrameError(f"function code {fc} in the answer, asked {function}")
    if len(pdu) < 2 or pdu[1] != nbytes or len(pdu) != 2 + nbytes:
        raise FrameError(f"byte count {pdu[1] if len(pdu) > 1 else '-'} / {len(pdu) - 2} bytes, expected {nbytes}")
    return pdu[2:]


# ---------------------------------------------------------------------------------- MBAP
class MbapFrame(NamedTuple):
    tid: int
    protocol: int
    unit: int
    pdu: bytes


_tuple_new = tuple.__new__


class MbapFramer:
    """Cuts a Modbus TCP byte stream into frames; :meth:`feed` bytes, take frames from :meth:`next_frame`."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def clear(self) -> None:
        self._buf.clear()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> MbapFrame | None:
        """The next complete frame, or None until more bytes arrive.  A length field outside 2..254
        raises FrameError and empties the buffer: without it the stream cannot be cut again."""
        buf = self._buf
        if len(buf) < 7:
            return None
        tid, proto, length, unit = _MBAP.unpack_from(buf)
        if length < 2 or length > 254:
            buf.clear()
            raise FrameError(f"MBAP length {length} out of range")
        end = 6 + length
        if len(buf) < end:
            return None
        pdu = bytes(buf[7:end])
        del buf[:end]
        return _tuple_new(MbapFrame, (tid, proto, unit, pdu))  # MbapFrame(...) without its Python-level __new__


# ---------------------------------------------------------------------------------- RTU
class RtuFrame(NamedTuple):
    unit: int
    pdu: bytes


Direction = Literal["response", "request"]
_UNKNOWN = 0  # no frame of a known function code starts here
_UNDECIDED = -1  # too few bytes yet to know the frame's length


def _response_size(buf: bytearray, i: int) -> int:
    """Length of the response frame starting at ``buf[i]`` (unit id, function code, ...)."""
    n = len(buf) - i
    if n < 2:
        return _UNDECIDED
    fc = buf[i + 1]
    if fc & 0x80:
        return 5  # unit, fc | 0x80, exception code, CRC
    if fc in READ_FUNCTIONS:
        return 5 + buf[i + 2] if n >= 3 else _UNDECIDED  # unit, fc, byte count, data, CRC
    if fc in _ECHO_FUNCTIONS:
        return 8  # write single / multiple: unit, fc, address, value or count, CRC
    return _UNKNOWN


def _request_size(buf: bytearray, i: int) -> int:
    """Length of the request frame starting at ``buf[i]`` (what a server, or a line monitor, reads)."""
    n = len(buf) - i
    if n < 2:
        return _UNDECIDED
    fc = buf[i + 1]
    if fc in READ_FUNCTIONS or fc in (5, 6):
        return 8  # unit, fc, address, count or value, CRC
    if fc in (15, 16):
        return 9 + buf[i + 6] if n >= 7 else _UNDECIDED  # unit, fc, address, count, byte count, data, CRC
    return _UNKNOWN


_ECHO_FUNCTIONS = frozenset({5, 6, 15, 16})


class RtuFramer:
    """Cuts a Modbus RTU byte stream into CRC-valid frames, resynchronising on garbage.

    The length of a frame follows from its function code (``direction``: the responses a client
    reads, or the requests a server reads).  At each position the framer asks: does a frame of a
    known function start here, and is its CRC right?  If not, that byte is skipped (counted in
    :attr:`skipped`) and the next position is tried.

    A frame whose length is known but whose bytes have not all arrived is waited for.  Garbage can
    look like such a beginning (a byte count of 200 where a read response would start); with
    ``accept`` (the unit and function the caller waits for), a complete CRC-valid frame further on
    that ``accept`` takes is returned instead of waiting for the bogus one, so garbage in front of
    the awaited answer costs no timeout.
    """

    __slots__ = ("_buf", "_size", "accept", "skipped")

    def __init__(
        self, direction: Direction = "response", accept: Callable[[int, int], bool] | None = None
    ) -> None:
        self._buf = bytearray()
        self._size = _response_size if direction == "response" else _request_size
        self.accept = accept
        self.skipped = 0  # bytes that started no CRC-valid frame

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def clear(self) -> None:
        self._buf.clear()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> RtuFrame | None:
        """The next CRC-valid frame, or None until more bytes arrive."""
        buf = self._buf
        size_of = self._size
        waiting = -1  # the first position where a frame may start whose bytes are not all here
        i = 0
        end = len(buf)
        while i + 4 <= end or (waiting < 0 and i < end):
            size = size_of(buf, i)
            if size == _UNDECIDED or (size > 0 and i + size > end):
                if waiting < 0:
                    waiting = i
                    if self.accept is None:
                        break
                i += 1
                continue
            if size > 0 and crc16(memoryview(buf)[i : i + size - 2]) == buf[i + size - 2] | buf[i + size - 1] << 8:
                unit, fc = buf[i], buf[i + 1]
                if waiting < 0 or (self.accept is not None and self.accept(unit, fc & 0x7F)):
                    frame = _tuple_new(RtuFrame, (unit, bytes(buf[i + 1 : i + size - 2])))
                    self.skipped += i
                    del buf[: i + size]
                    return frame
            i += 1
        keep_from = waiting if waiting >= 0 else i
        if keep_from > 0:
            self.skipped += keep_from
            del buf[:keep_from]
        return None
