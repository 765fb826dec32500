"""S7 values from bytes (pure): big-endian numbers, STRING / WSTRING with their headers, BCD dates.

``decode(data_type, raw, ...)`` returns ``(value, None)`` or ``(None, reason)``: a value the PLC
memory cannot mean (a STRING whose header says more characters than it holds, a DATE_AND_TIME with
a nibble above 9) spoils only its own point.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Callable

from drivers.s7.config import DataType
from gateway.core.point import Value
from gateway.core.values import StringEncoding

__all__ = ["Reader", "decode", "reader"]

_STRUCT = {
    DataType.BYTE: struct.Struct(">B"), DataType.WORD: struct.Struct(">H"), DataType.INT: struct.Struct(">h"),
    DataType.DWORD: struct.Struct(">I"), DataType.DINT: struct.Struct(">i"), DataType.REAL: struct.Struct(">f"),
    DataType.LREAL: struct.Struct(">d"),
}


def decode(kind: DataType, raw: bytes, bit: int | None = None, length: int = 254,
           encoding: StringEncoding = StringEncoding.LATIN_1) -> tuple[Value | None, str | None]:
    """One value of type ``kind`` from exactly its bytes (``raw`` as wide as the type)."""
    if kind is DataType.BOOL:
        return bool(raw[0] >> (bit or 0) & 1), None
    s = _STRUCT.get(kind)
    if s is not None:
        v = s.unpack(raw)[0]
        if isinstance(v, float) and not math.isfinite(v):
            return None, "nan" if math.isnan(v) else "inf"
        return v, None
    if kind is DataType.STRING:
        return _string(raw, length, encoding)
    if kind is DataType.WSTRING:
        return _wstring(raw, length)
    return _date_and_time(raw)


def _string(raw: bytes, length: int, encoding: StringEncoding) -> tuple[Value | None, str | None]:
    declared, actual = raw[0], raw[1]
    if actual > declared or actual > length:
        return None, "string_header_invalid"
    try:
        return raw[2:2 + actual].decode(encoding.value), None
    except UnicodeDecodeError:
        return None, "encoding_error"


def _wstring(raw: bytes, length: int) -> tuple[Value | None, str | None]:
    declared, actual = struct.unpack_from(">HH", raw)
    if actual > declared or actual > length:
        return None, "string_header_invalid"
    try:
        return raw[4:4 + 2 * actual].decode("utf-16-be"), None
    except UnicodeDecodeError:
        return None, "encoding_error"


def _bcd(b: int) -> int:
    hi, lo = b >> 4, b & 0x0F
    if hi > 9 or lo > 9:
        raise ValueError
    return hi * 10 + lo


def _date_and_time(raw: bytes) -> tuple[Value | None, str | None]:
    """DATE_AND_TIME: BCD year (90..99 = 1990s, 00..89 = 2000s), month, day, hour, minute, second,
    milliseconds (three digits), weekday (1 = Sunday) -> ISO 8601 text in the PLC's local time."""
    try:
        yy, month, day, hour, minute, second, ms_hi = (_bcd(b) for b in raw[:7])
        ms_lo = raw[7] >> 4
        if ms_lo > 9:
            raise ValueError
    except ValueError:
        return None, "invalid_bcd"
    year = 1900 + yy if yy >= 90 else 2000 + yy
    ms = ms_hi * 10 + ms_lo
    try:
        when = dt.datetime(year, month, day, hour, minute, second, ms * 1000)
    except ValueError:
        return None, "invalid_date"
    return when.isoformat(timespec="milliseconds"), None


Reader = Callable[[bytes, int], tuple[Value | None, str | None]]


def reader(kind: DataType, bit: int | None = None, length: int = 254,
           encoding: StringEncoding = StringEncoding.LATIN_1) -> Reader:
    """``decode`` specialised for one point, reading at an offset of a larger buffer without a copy:
    what the driver calls per point and poll (the same results as :func:`decode`, checked by tests)."""
    if kind is DataType.BOOL:
        mask = 1 << (bit or 0)

        def read_bool(buf: bytes, off: int) -> tuple[Value | None, str | None]:
            return bool(buf[off] & mask), None

        return read_bool
    s = _STRUCT.get(kind)
    if s is not None:
        unpack = s.unpack_from
        if kind in (DataType.REAL, DataType.LREAL):

            def read_float(buf: bytes, off: int) -> tuple[Value | None, str | None]:
                v: float = unpack(buf, off)[0]
                if v - v == 0:  # finite (inf - inf and nan - nan are nan)
                    return v, None
                return None, "nan" if v != v else "inf"

            return read_float

        def read_int(buf: bytes, off: int) -> tuple[Value | None, str | None]:
            return unpack(buf, off)[0], None

        return read_int
    width = kind.width(length)

    def read_other(buf: bytes, off: int) -> tuple[Value | None, str | None]:
        return decode(kind, buf[off:off + width], bit, length, encoding)

    return read_other
