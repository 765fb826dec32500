"""DL/T 645-2007 framing, addresses and BCD values: pure bytes in, frames and values out (no I/O).

A frame on the wire::

    FE FE FE FE   68  A0 A1 A2 A3 A4 A5  68  C  L  DATA(L bytes, each +0x33)  CS  16
    wake-up       start  address (BCD,   start ctrl len                       sum end
    preamble             low byte first)

``CS`` is the sum modulo 256 of every byte from the first 0x68 to the last data byte.  The meter
address is 12 BCD digits printed on the nameplate most significant first; on the wire its bytes are
reversed (A0 holds the last two digits).  A data identifier (DI3 DI2 DI1 DI0, written in the spec's
tables as ``02 01 01 00``) travels as DI0 first.  Values are BCD, least significant byte first; a
signed quantity keeps its sign in the top bit of the most significant byte.

:class:`Deframer` takes bytes as they arrive (any split, any garbage or wake-up bytes before a frame)
and yields checksum-valid frames; everything else is counted and skipped.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = [
    "ADDRESS_DIGITS",
    "BROADCAST",
    "Control",
    "Deframer",
    "Frame",
    "FrameError",
    "MeterError",
    "ValueFormat",
    "checksum",
    "decode_bcd",
    "encode_bcd",
    "encode_frame",
    "error_reason",
    "format_address",
    "format_di",
    "parse_address",
    "parse_di",
    "read_followup_request",
    "read_request",
]

START = 0x68
END = 0x16
WAKE = 0xFE
OFFSET = 0x33
ADDRESS_DIGITS = 12
BROADCAST = "999999999999"
MAX_DATA = 200  # the 2007 edition limits L to 200 for reads


class Control(enum.IntEnum):
    READ = 0x11  # master: read data (DI)
    READ_FOLLOWUP = 0x12  # master: read follow-up data (DI, SEQ)
    READ_OK = 0x91  # meter: normal answer, no follow-up data
    READ_OK_MORE = 0xB1  # meter: normal answer, follow-up data exist
    READ_ERROR = 0xD1  # meter: abnormal answer, one error byte
    FOLLOWUP_OK = 0x92
    FOLLOWUP_OK_MORE = 0xB2
    FOLLOWUP_ERROR = 0xD2


# error byte of an abnormal answer (DL/T 645-2007 table "错误信息字 SERR"), bit -> our reason
_ERROR_BITS = (
    (0x02, "dlt645_no_such_data"),  # 无请求数据: the meter does not have this DI
    (0x04, "dlt645_unauthorised"),  # 密码错/未授权
    (0x08, "dlt645_baud_rate_unchangeable"),
    (0x10, "dlt645_too_many_year_zones"),
    (0x20, "dlt645_too_many_day_periods"),
    (0x40, "dlt645_too_many_tariffs"),
    (0x01, "dlt645_other_error"),  # 其他错误
)


def error_reason(err: int) -> str:
    """The quality reason of an abnormal answer's error byte (the most specific bit set wins)."""
    for bit, reason in _ERROR_BITS:
        if err & bit:
            return reason
    return f"dlt645_error_0x{err:02x}"


class FrameError(ValueError):
    """Bytes that are not a valid frame, or a frame that breaks the spec (length, control code)."""


class MeterError(Exception):
    """The meter answered abnormally (control 0xD1 / 0xD2) with this error byte."""

    def __init__(self, err: int) -> None:
        super().__init__(f"abnormal answer, error byte 0x{err:02x} ({error_reason(err)})")
        self.err = err
        self.reason = error_reason(err)


# -- addresses ------------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\-_:]")


def parse_address(text: str) -> bytes:
    """``"000012345678"`` (as on the nameplate; spaces and dashes allowed) -> the 6 wire bytes.

    The broadcast address (all 9s) and the wildcard AA are refused: a read sent to them is answered
    by every meter on the line at once (garbled on RS-485) or by whichever meter happens to be there,
    so a point read that way has no defined source."""
    digits = _SEPARATORS.sub("", str(text))
    if digits.upper().count("A") and re.fullmatch(r"[0-9Aa]+", digits):
        raise ValueError(
            f"meter address {text!r} uses the wildcard 'AA', which any meter answers: give the meter's own "
            "12-digit address (nameplate, or read it once with the meter alone on the line)"
        )
    if not re.fullmatch(r"[0-9]{1,12}", digits):
        raise ValueError(f"meter address {text!r} is not 12 decimal digits (as printed on the meter's nameplate)")
    digits = digits.zfill(ADDRESS_DIGITS)
    if digits == BROADCAST:
        raise ValueError(
            f"meter address {text!r} is the broadcast address: every meter on the line would answer at once; "
            "give the meter's own 12-digit address"
        )
    return bytes(int(digits[i : i + 2], 16) for i in range(10, -1, -2))


def format_address(wire: bytes) -> str:
    """The 6 wire bytes -> the 12 digits as printed on the nameplate."""
    return "".join(f"{b:02x}" for b in reversed(wire)).upper()


# -- data identifiers -----------------------------------------------------------------------------

_DI = re.compile(r"^(?:0x)?([0-9a-fA-F]{8})$")


def parse_di(text: str) -> int:
    """``"02 01 01 00"``, ``"02010100"``, ``"0x02010100"`` (DI3 first, as in the spec) -> 0x02010100."""
    compact = _SEPARATORS.sub("", str(text))
    m = _DI.match(compact)
    if m is None:
        raise ValueError(
            f"data identifier {text!r} is not 4 bytes in hex written DI3 first, e.g. '02 01 01 00' (phase A voltage)"
        )
    return int(m.group(1), 16)


def format_di(di: int) -> str:
    """0x02010100 -> ``"02 01 01 00"``."""
    return " ".join(f"{(di >> s) & 0xFF:02X}" for s in (24, 16, 8, 0))


# -- values -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueFormat:
    """A BCD format of the spec's tables, e.g. ``XXX.XXX``: digits, decimals, sign in the top bit."""

    nbytes: int
    decimals: int
    signed: bool = False

    @classmethod
    def parse(cls, text: str, signed: bool = False) -> ValueFormat:
        """``"XXXXXX.XX"`` -> 4 bytes, 2 decimals.  Digits must be even (whole bytes)."""
        t = text.strip().upper()
        if not re.fullmatch(r"X+(\.X+)?", t):
            raise ValueError(f"format {text!r} is not like the spec's 'XXX.XXX' (X for each digit, '.' for the point)")
        whole, _, frac = t.partition(".")
        digits = len(whole) + len(frac)
        if digits % 2 or digits > 16:
            raise ValueError(f"format {text!r} has {digits} digits: BCD values have an even number, at most 16")
        return cls(digits // 2, len(frac), signed)

    def __str__(self) -> str:
        digits = 2 * self.nbytes
        whole = "X" * (digits - self.decimals)
        return whole + ("." + "X" * self.decimals if self.decimals else "")


def decode_bcd(raw: bytes | bytearray | memoryview, fmt: ValueFormat) -> float:
    """BCD bytes (least significant first, offset already removed) -> the value.

    Raises ValueError on a nibble above 9 (0xFF filler of a meter without the quantity, a garbled
    byte): such a sample is bad, never a wrong number."""
    if len(raw) < fmt.nbytes:
        raise ValueError(f"{len(raw)} data bytes, format {fmt} needs {fmt.nbytes}")
    n = 0
    negative = False
    for i in range(fmt.nbytes - 1, -1, -1):
        b = raw[i]
        if i == fmt.nbytes - 1 and fmt.signed:
            negative = bool(b & 0x80)
            b &= 0x7F
        hi, lo = b >> 4, b & 0x0F
        if hi > 9 or lo > 9:
            raise ValueError(f"byte 0x{raw[i]:02x} is not BCD")
        n = n * 100 + hi * 10 + lo
    value = n / 10**fmt.decimals if fmt.decimals else float(n)
    return -value if negative else value


def encode_bcd(value: float, fmt: ValueFormat) -> bytes:
    """The inverse of :func:`decode_bcd` (for simulated meters and tests); rounds to the format."""
    n = round(abs(value) * 10**fmt.decimals)
    # a signed value's top nibble holds 0..7 beside the sign bit
    limit = 8 * 10 ** (2 * fmt.nbytes - 1) if fmt.signed else 10 ** (2 * fmt.nbytes)
    if n >= limit:
        raise ValueError(f"{value} does not fit format {fmt}")
    out = bytearray()
    for _ in range(fmt.nbytes):
        n, two = divmod(n, 100)
        out.append((two // 10) << 4 | two % 10)
    if fmt.signed and value < 0 and any(out):
        out[-1] |= 0x80
    return bytes(out)


# -- frames -------------------------------------------------------------------------------------------


def checksum(data: bytes | bytearray | memoryview) -> int:
    return sum(data) & 0xFF


@dataclass(frozen=True, slots=True)
class Frame:
    """A checksum-valid frame; ``data`` with the 0x33 offset removed."""

    address: bytes  # 6 wire bytes
    control: int
    data: bytes

    @property
    def is_response(self) -> bool:
        return bool(self.control & 0x80)

    @property
    def is_abnormal(self) -> bool:
        return bool(self.control & 0x40)

    @property
    def has_followup(self) -> bool:
        return bool(self.control & 0x20)


def encode_frame(address: bytes, control: int, data: bytes = b"", preamble: int = 4) -> bytes:
    """A frame with ``preamble`` wake-up bytes 0xFE in front; ``data`` is given without the offset."""
    if len(address) != 6:
        raise ValueError("a meter address is 6 bytes on the wire")
    if len(data) > 255:
        raise ValueError("at most 255 data bytes fit a frame")
    body = bytes((START, *address, START, control, len(data), *((b + OFFSET) & 0xFF for b in data)))
    return bytes((WAKE,)) * preamble + body + bytes((checksum(body), END))


def read_request(address: bytes, di: int, preamble: int = 4) -> bytes:
    """Read data (0x11) of one data identifier."""
    return encode_frame(address, Control.READ, di.to_bytes(4, "little"), preamble)


def read_followup_request(address: bytes, di: int, seq: int, preamble: int = 4) -> bytes:
    """Read follow-up data (0x12): the DI and the number of the follow-up frame wanted."""
    return encode_frame(address, Control.READ_FOLLOWUP, di.to_bytes(4, "little") + bytes((seq & 0xFF,)), preamble)


class Deframer:
    """Bytes in, checksum-valid frames out, whatever the split and whatever comes before a frame.

    Resynchronises on the next 0x68 after anything that is not a frame (a wake-up byte, line noise,
    a frame cut short by a timeout, a bad checksum); ``skipped`` counts the bytes thrown away and
    ``bad_checksums`` the frames whose sum did not match.  A frame is at most 12 + 255 bytes, so the
    buffer never holds more than one frame's worth of unmatched bytes.
    """

    __slots__ = ("_buf", "bad_checksums", "skipped")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0
        self.bad_checksums = 0

    @property
    def pending(self) -> int:
        """Bytes held that may yet become a frame (a frame cut short shows here)."""
        return len(self._buf)

    def clear(self) -> None:
        self.skipped += len(self._buf)
        self._buf.clear()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        while True:
            start = buf.find(START)
            if start < 0:
                self.skipped += len(buf)
                buf.clear()
                return out
            if start:
                self.skipped += start
                del buf[:start]
            if len(buf) < 10:
                return out
            if buf[7] != START:
                self._drop_one()
                continue
            size = 12 + buf[9]
            if len(buf) < size:
                return out
            if buf[size - 1] != END:
                self._drop_one()
                continue
            if checksum(memoryview(buf)[: size - 2]) != buf[size - 2]:
                self.bad_checksums += 1
                self._drop_one()
                continue
            data = bytes((b - OFFSET) & 0xFF for b in memoryview(buf)[10 : size - 2])
            out.append(Frame(bytes(buf[1:7]), buf[8], data))
            del buf[:size]

    def _drop_one(self) -> None:
        self.skipped += 1
        del self._buf[:1]
