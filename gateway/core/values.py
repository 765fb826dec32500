"""What a sample may carry, and how one that may not spoils only itself (DESIGN §5).

Drivers hand over whatever a device or server sent: a String that is not UTF-8 (asyncua and
:mod:`drivers.opcua.wire` keep its bytes as lone surrogates, ``surrogateescape``), a DateTime
beyond what a 64-bit nanosecond count holds, an integer no wire format carries, a structure no
converter knew.  :func:`admit` turns any such sample into a bad one with reason
``encoding_error`` (``nan`` / ``inf`` where those say more), so the batch around
it still encodes.  The pipeline's first stage calls it for the rare values that are not plain,
and the encoder calls it as a backstop when a batch does not encode: nothing a device sends can
make the gateway exit.

The wire's value domain: ``bool``; ``int`` from -2**63 to 2**64 - 1 (what msgpack carries
losslessly); finite ``float``; ``str`` that is valid Unicode without surrogates.  A source time
is an ``int`` within the signed 64-bit range (what InfluxDB stores).

Strings that are not UTF-8: a device (and a point) may name its ``string_encoding``; the driver
decodes the raw bytes with it (:func:`decode_text`), or re-reads a string that was decoded as
UTF-8 with ``surrogateescape`` (:func:`redecode`).
"""

from __future__ import annotations

import enum
import math
from typing import Any

from gateway.core.point import Quality, Sample, SampleBatch, Value, now_ns

__all__ = [
    "ENCODING_ERROR",
    "INT_MAX",
    "INT_MIN",
    "TS_MAX",
    "TS_MIN",
    "StringEncoding",
    "admit",
    "admit_batch",
    "decode_text",
    "is_text",
    "redecode",
    "wire_value",
]

ENCODING_ERROR = "encoding_error"
INT_MIN = -(1 << 63)  # msgpack's int64 ...
INT_MAX = (1 << 64) - 1  # ... to its uint64
TS_MIN = -(1 << 63)  # InfluxDB timestamps are signed 64-bit nanoseconds
TS_MAX = (1 << 63) - 1


class StringEncoding(enum.StrEnum):
    """How a device's text bytes are to be read (older servers in Chinese plants send GBK)."""

    UTF_8 = "utf-8"
    GBK = "gbk"
    GB18030 = "gb18030"
    LATIN_1 = "latin-1"

    @classmethod
    def _missing_(cls, value: object) -> StringEncoding | None:
        """Spellings Python's codec registry knows for the same codec (``UTF8``, ``GBK``, ``latin1``)."""
        if isinstance(value, str):
            key = value.strip().lower().replace("_", "-")
            return _ALIASES.get(key)
        return None


_ALIASES = {
    "utf8": StringEncoding.UTF_8,
    "latin1": StringEncoding.LATIN_1,
    "iso-8859-1": StringEncoding.LATIN_1,
    "iso8859-1": StringEncoding.LATIN_1,
    **{e.value: e for e in StringEncoding},
}


def is_text(s: str) -> bool:
    """Whether a str can be written as UTF-8 (no lone surrogates): what every encoder needs."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_text(raw: bytes, encoding: StringEncoding) -> str:
    """Text from a device's bytes; raises ``UnicodeDecodeError`` (a ValueError) when they are not."""
    return raw.decode(encoding.value)


def redecode(s: str, encoding: StringEncoding) -> str:
    """A string decoded as UTF-8 with ``surrogateescape`` (asyncua, the wire decoder), read again in
    the device's ``encoding``: the original bytes come back exactly, then decode strictly.

    Raises ``ValueError`` (``UnicodeError``) when the bytes are not text in that encoding.
    """
    if s.isascii():  # every supported encoding is an ASCII superset
        return s
    if encoding is StringEncoding.UTF_8:
        s.encode("utf-8")  # raises on the surrogates that stand for undecodable bytes
        return s
    return s.encode("utf-8", "surrogateescape").decode(encoding.value)


def wire_value(value: Any) -> tuple[Value | None, str | None]:
    """``(value, None)`` with the value as a plain wire type (``None`` included), or ``(None, reason)``."""
    tv = type(value)
    if tv is bool:
        return value, None
    if tv is float:
        if math.isfinite(value):
            return value, None
        return None, "nan" if value != value else "inf"
    if tv is int:
        return (value, None) if INT_MIN <= value <= INT_MAX else (None, ENCODING_ERROR)
    if tv is str:
        return (value, None) if is_text(value) else (None, ENCODING_ERROR)
    if value is None:  # a gap: encodes as it is (drivers send bad quality with it)
        return None, None
    # subclasses (IntEnum, a library's str alias): their plain value, checked the same way
    if isinstance(value, bool):
        return bool(value), None
    if isinstance(value, int):
        return wire_value(int(value))
    if isinstance(value, float):
        return wire_value(float(value))
    if isinstance(value, str):
        return wire_value(str(value))
    return None, ENCODING_ERROR  # bytes, lists, structures: a driver converts what it means to send


def admit(sample: Any) -> Sample:
    """The sample as it may travel, or the same point bad with the reason.  What encodes is left
    as it is (a gap with good quality too); a bad sample keeps its own reason.  Never raises for a
    5-sequence whose first element is a point index."""
    idx, ts, value, quality, reason = sample
    if type(ts) is not int or not TS_MIN <= ts <= TS_MAX:
        return (idx, now_ns(), None, Quality.BAD, ENCODING_ERROR)
    if type(quality) is not Quality:
        try:
            quality = Quality(quality)
        except (ValueError, TypeError):
            return (idx, ts, None, Quality.BAD, ENCODING_ERROR)
    if reason is not None and not (isinstance(reason, str) and is_text(reason)):
        return (idx, ts, None, Quality.BAD, ENCODING_ERROR)
    if reason is not None and type(reason) is not str:
        reason = str(reason)
    v, why = wire_value(value)
    if why is not None:
        return (idx, ts, None, Quality.BAD, reason if quality is Quality.BAD and reason else why)
    return (idx, ts, v, quality, reason)


def admit_batch(batch: SampleBatch) -> SampleBatch:
    return [admit(s) for s in batch]
