"""IEC 60870-5-104 framing and ASDU coding (pure: bytes in, frames and values out; no I/O, no clock).

APCI (IEC 60870-5-104 §5)::

    0x68 | length (4..253) | control field (4 octets) | ASDU (0..249 octets, I-format only)

* I-format: control octet 1 bit 0 = 0; N(S) in octets 1-2, N(R) in octets 3-4, each shifted left by 1.
* S-format: octet 1 = 0x01, octet 2 = 0; N(R) in octets 3-4.
* U-format: octet 1 bits 0-1 = 11 and exactly one function bit: STARTDT / STOPDT / TESTFR, act or con.

ASDU (IEC 60870-5-101 §7 with the 104 field sizes: 2-octet cause of transmission, 2-octet common
address, 3-octet information object address)::

    type id | VSQ (SQ bit 7, count 0..127) | COT (T bit 7, P/N bit 6, cause 0..63) | originator
    | CA (LE16) | information objects

Decoded information objects are plain tuples ``(ioa, value, flags, time)`` so the driver can map them
to samples without building objects per value: ``flags`` holds the quality bits in one mask (the QDS
positions IV 0x80, NT 0x40, SB 0x20, BL 0x10, OV 0x01, and for integrated totals CY 0x100 and CA 0x200),
``time`` is a :class:`Cp56` or ``None``.  An integrated total's sequence number (0..31) rides in
bits 16-20 of ``flags``.
"""

from __future__ import annotations

import datetime as dt
import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

__all__ = [
    "FLAG_BL",
    "FLAG_CA",
    "FLAG_CY",
    "FLAG_IV",
    "FLAG_NT",
    "FLAG_OV",
    "FLAG_SB",
    "MAX_ASDU",
    "SEQ_MOD",
    "START",
    "TYPES",
    "Asdu",
    "AsduError",
    "Cot",
    "Cp56",
    "Deframer",
    "Frame",
    "FrameError",
    "IFrame",
    "InfoObject",
    "SFrame",
    "TypeId",
    "UFrame",
    "UFunc",
    "UnknownTypeError",
    "decode_asdu",
    "encode_asdu",
    "encode_frame",
    "max_objects",
]

START = 0x68
MAX_APDU = 253  # the length octet counts the control field and the ASDU
MAX_ASDU = MAX_APDU - 4
SEQ_MOD = 1 << 15  # sequence numbers are 15 bits

FLAG_OV = 0x01
FLAG_BL = 0x10
FLAG_SB = 0x20
FLAG_NT = 0x40
FLAG_IV = 0x80
FLAG_CY = 0x100  # integrated totals: counter overflowed in the period (carry)
FLAG_CA = 0x200  # integrated totals: counter was adjusted


class TypeId(enum.IntEnum):
    """The type identifications this codec reads and writes (IEC 60870-5-101 §7.2.1.1)."""

    M_SP_NA_1 = 1  # single point
    M_DP_NA_1 = 3  # double point
    M_ME_NA_1 = 9  # measured value, normalised
    M_ME_NB_1 = 11  # measured value, scaled
    M_ME_NC_1 = 13  # measured value, short floating point
    M_IT_NA_1 = 15  # integrated totals
    M_ME_ND_1 = 21  # measured value, normalised, without quality descriptor
    M_SP_TB_1 = 30  # ... with CP56Time2a time tag
    M_DP_TB_1 = 31
    M_ME_TD_1 = 34
    M_ME_TE_1 = 35
    M_ME_TF_1 = 36
    M_IT_TB_1 = 37
    M_EI_NA_1 = 70  # end of initialisation
    C_IC_NA_1 = 100  # (general) interrogation command
    C_CI_NA_1 = 101  # counter interrogation command
    C_CS_NA_1 = 103  # clock synchronisation command


class Cot(enum.IntEnum):
    """Causes of transmission used here (IEC 60870-5-101 §7.2.3)."""

    PERIODIC = 1
    BACKGROUND = 2
    SPONTANEOUS = 3
    INITIALISED = 4
    REQUEST = 5
    ACTIVATION = 6
    ACTIVATION_CON = 7
    DEACTIVATION = 8
    DEACTIVATION_CON = 9
    ACTIVATION_TERMINATION = 10
    INTERROGATED_BY_STATION = 20
    REQUESTED_BY_GENERAL_COUNTER = 37
    UNKNOWN_TYPE = 44
    UNKNOWN_CAUSE = 45
    UNKNOWN_CA = 46
    UNKNOWN_IOA = 47


class UFunc(enum.IntEnum):
    """U-format functions: the first control octet."""

    STARTDT_ACT = 0x07
    STARTDT_CON = 0x0B
    STOPDT_ACT = 0x13
    STOPDT_CON = 0x23
    TESTFR_ACT = 0x43
    TESTFR_CON = 0x83


class FrameError(ValueError):
    """The byte stream is not 104 APDUs (wrong start octet, impossible length or control field).
    A TCP stream cannot be resynchronised after that: the connection must be closed."""


class AsduError(ValueError):
    """An ASDU whose length or fields do not add up (truncated, trailing bytes, bad count)."""


class UnknownTypeError(AsduError):
    """A type identification this codec does not read; the ASDU is skipped, the link stays up."""

    def __init__(self, type_id: int) -> None:
        super().__init__(f"unknown type identification {type_id}")
        self.type_id = type_id


@dataclass(frozen=True, slots=True)
class IFrame:
    ns: int  # send sequence number N(S)
    nr: int  # receive sequence number N(R)
    asdu: bytes


@dataclass(frozen=True, slots=True)
class SFrame:
    nr: int


@dataclass(frozen=True, slots=True)
class UFrame:
    func: UFunc


Frame: TypeAlias = IFrame | SFrame | UFrame


class Cp56(NamedTuple):
    """CP56Time2a (IEC 60870-5-4 §6.8) as its fields: the time zone is the station's, not in the tag."""

    ms: int  # milliseconds within the minute, 0..59999
    minute: int
    hour: int
    day: int  # day of month 1..31
    month: int
    year: int  # 0..99 (2000 + year)
    weekday: int = 0  # 1..7, 0 = not used
    invalid: bool = False  # IV: the time tag is not valid
    summer: bool = False  # SU: summer time
    substituted: bool = False  # RES1/GEN: time substituted (not from the source)

    def encode(self) -> bytes:
        return bytes((
            self.ms & 0xFF, self.ms >> 8,
            (self.minute & 0x3F) | (0x40 if self.substituted else 0) | (0x80 if self.invalid else 0),
            (self.hour & 0x1F) | (0x80 if self.summer else 0),
            (self.day & 0x1F) | ((self.weekday & 0x07) << 5),
            self.month & 0x0F,
            self.year & 0x7F,
        ))

    @classmethod
    def decode(cls, b: bytes | memoryview, at: int = 0) -> Cp56:
        m = b[at + 2]
        h = b[at + 3]
        d = b[at + 4]
        return cls(
            b[at] | (b[at + 1] << 8), m & 0x3F, h & 0x1F, d & 0x1F, b[at + 5] & 0x0F, b[at + 6] & 0x7F,
            d >> 5, bool(m & 0x80), bool(h & 0x80), bool(m & 0x40),
        )

    def to_datetime(self, tz: dt.tzinfo = dt.UTC) -> dt.datetime:
        """The instant, reading the fields in the station's zone; ValueError for impossible fields
        (minute 61, 30 February, ms 60000 and more)."""
        sec, ms = divmod(self.ms, 1000)
        # the hour repeated when summer time ends: SU names which of the two it is
        return dt.datetime(2000 + self.year, self.month, self.day, self.hour, self.minute, sec, ms * 1000, tzinfo=tz,
                           fold=0 if self.summer else 1)

    def to_ns(self, tz: dt.tzinfo = dt.UTC) -> int:
        t = self.to_datetime(tz)
        return (int(t.timestamp()) * 1000 + t.microsecond // 1000) * 1_000_000

    @classmethod
    def from_ns(cls, ns: int, tz: dt.tzinfo = dt.UTC) -> Cp56:
        t = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz).replace(microsecond=(ns // 1000) % 1_000_000)
        dst = t.dst()
        return cls(t.second * 1000 + t.microsecond // 1000, t.minute, t.hour, t.day, t.month, t.year % 100,
                   t.isoweekday(), summer=bool(dst))


# (ioa, value, quality flags, time tag)
InfoObject: TypeAlias = tuple[int, "float | int | bool | Cp56 | None", int, Cp56 | None]


@dataclass(frozen=True, slots=True)
class Asdu:
    type_id: int
    cause: int
    ca: int
    objects: tuple[InfoObject, ...] = ()
    sq: bool = False  # one IOA, the following objects at consecutive addresses
    negative: bool = False  # P/N: negative confirmation
    test: bool = False
    originator: int = 0


# element layout per type: (size of the element without the time tag, has a CP56Time2a tag)
TYPES: dict[int, tuple[int, bool]] = {
    TypeId.M_SP_NA_1: (1, False),
    TypeId.M_SP_TB_1: (1, True),
    TypeId.M_DP_NA_1: (1, False),
    TypeId.M_DP_TB_1: (1, True),
    TypeId.M_ME_NA_1: (3, False),
    TypeId.M_ME_TD_1: (3, True),
    TypeId.M_ME_NB_1: (3, False),
    TypeId.M_ME_TE_1: (3, True),
    TypeId.M_ME_NC_1: (5, False),
    TypeId.M_ME_TF_1: (5, True),
    TypeId.M_IT_NA_1: (5, False),
    TypeId.M_IT_TB_1: (5, True),
    TypeId.M_ME_ND_1: (2, False),
    TypeId.M_EI_NA_1: (1, False),
    TypeId.C_IC_NA_1: (1, False),
    TypeId.C_CI_NA_1: (1, False),
    TypeId.C_CS_NA_1: (0, True),
}
_SINGLE = frozenset({TypeId.M_SP_NA_1, TypeId.M_SP_TB_1})
_DOUBLE = frozenset({TypeId.M_DP_NA_1, TypeId.M_DP_TB_1})
_NORMALISED = frozenset({TypeId.M_ME_NA_1, TypeId.M_ME_TD_1})
_SCALED = frozenset({TypeId.M_ME_NB_1, TypeId.M_ME_TE_1})
_FLOAT = frozenset({TypeId.M_ME_NC_1, TypeId.M_ME_TF_1})
_TOTALS = frozenset({TypeId.M_IT_NA_1, TypeId.M_IT_TB_1})
_QUALIFIER = frozenset({TypeId.M_EI_NA_1, TypeId.C_IC_NA_1, TypeId.C_CI_NA_1})

_I16 = struct.Struct("<h")
_F32 = struct.Struct("<f")
_I32 = struct.Struct("<i")
_H = struct.Struct("<H")
_QDS_MASK = FLAG_IV | FLAG_NT | FLAG_SB | FLAG_BL | FLAG_OV
_SIQ_MASK = FLAG_IV | FLAG_NT | FLAG_SB | FLAG_BL


def max_objects(type_id: int, sq: bool = False) -> int:
    """How many information objects of a type fit in one ASDU (at most 127, the VSQ's count)."""
    size, timed = TYPES[type_id]
    size += 7 if timed else 0
    room = MAX_ASDU - 6
    return min(127, (room - 3) // size if sq else room // (size + 3))


def decode_asdu(data: bytes | memoryview) -> Asdu:
    """One ASDU; raises :class:`UnknownTypeError` for a type this codec does not read and
    :class:`AsduError` when the fields do not add up to the length."""
    n = len(data)
    if n < 6:
        raise AsduError(f"ASDU of {n} octets is shorter than its 6-octet header")
    type_id, vsq, cot, orig = data[0], data[1], data[2], data[3]
    ca = data[4] | (data[5] << 8)
    layout = TYPES.get(type_id)
    if layout is None:
        raise UnknownTypeError(type_id)
    size, timed = layout
    elem = size + (7 if timed else 0)
    count = vsq & 0x7F
    sq = bool(vsq & 0x80)
    if count == 0:
        raise AsduError("ASDU with 0 information objects")
    want = 6 + (3 + count * elem if sq else count * (3 + elem))
    if n != want:
        raise AsduError(f"type {type_id} with {count} object(s) needs {want} octets, got {n}")
    objects: list[InfoObject] = []
    at = 6
    ioa = 0
    last_raw = b""
    last_tag: Cp56 | None = None
    for i in range(count):
        if not sq or i == 0:
            ioa = data[at] | (data[at + 1] << 8) | (data[at + 2] << 16)
            at += 3
        else:
            ioa += 1
        obj = _element(type_id, data, at, size, False, ioa)
        if timed and type_id != TypeId.C_CS_NA_1:
            raw = bytes(data[at + size:at + elem])
            if raw != last_raw:  # the objects of an ASDU mostly share one time tag: decode it once
                last_raw, last_tag = raw, Cp56.decode(raw)
            obj = (obj[0], obj[1], obj[2], last_tag)
        elif timed:
            obj = _element(type_id, data, at, size, True, ioa)
        objects.append(obj)
        at += elem
    return Asdu(type_id, cot & 0x3F, ca, tuple(objects), sq, bool(cot & 0x40), bool(cot & 0x80), orig)


def _element(type_id: int, b: bytes | memoryview, at: int, size: int, timed: bool, ioa: int) -> InfoObject:
    time = Cp56.decode(b, at + size) if timed else None
    if type_id in _FLOAT:
        return ioa, _F32.unpack_from(b, at)[0], b[at + 4] & _QDS_MASK, time
    if type_id in _SINGLE:
        return ioa, bool(b[at] & 1), b[at] & _SIQ_MASK, time
    if type_id in _DOUBLE:
        return ioa, b[at] & 3, b[at] & _SIQ_MASK, time
    if type_id in _NORMALISED:
        return ioa, _I16.unpack_from(b, at)[0] / 32768, b[at + 2] & _QDS_MASK, time
    if type_id in _SCALED:
        return ioa, _I16.unpack_from(b, at)[0], b[at + 2] & _QDS_MASK, time
    if type_id in _TOTALS:
        s = b[at + 4]
        flags = (s & FLAG_IV) | (FLAG_CY if s & 0x20 else 0) | (FLAG_CA if s & 0x40 else 0)
        return ioa, _I32.unpack_from(b, at)[0], flags | ((s & 0x1F) << 16), time
    if type_id == TypeId.M_ME_ND_1:
        return ioa, _I16.unpack_from(b, at)[0] / 32768, 0, time
    if type_id in _QUALIFIER:
        return ioa, b[at], 0, None
    return ioa, time, 0, None  # C_CS_NA_1: the time is the value


def encode_asdu(a: Asdu) -> bytes:
    """The octets of an ASDU; ValueError for what cannot be encoded (too many objects, a value out of
    its type's range, addresses that are not consecutive under SQ)."""
    layout = TYPES.get(a.type_id)
    if layout is None:
        raise UnknownTypeError(a.type_id)
    timed = layout[1]
    count = len(a.objects)
    if not 1 <= count <= 127:
        raise ValueError(f"an ASDU holds 1..127 information objects, not {count}")
    out = bytearray((
        a.type_id, count | (0x80 if a.sq else 0),
        (a.cause & 0x3F) | (0x40 if a.negative else 0) | (0x80 if a.test else 0),
        a.originator & 0xFF, a.ca & 0xFF, (a.ca >> 8) & 0xFF,
    ))
    first = a.objects[0][0]
    for i, (ioa, value, flags, time) in enumerate(a.objects):
        if not 0 <= ioa <= 0xFFFFFF:
            raise ValueError(f"information object address {ioa} is outside 0..16777215")
        if not a.sq or i == 0:
            out += ioa.to_bytes(3, "little")
        elif ioa != first + i:
            raise ValueError("SQ = 1 needs consecutive information object addresses")
        out += _encode_element(a.type_id, value, flags)
        if timed and a.type_id != TypeId.C_CS_NA_1:
            out += (time or Cp56(0, 0, 0, 1, 1, 0, invalid=True)).encode()
    if len(out) > MAX_ASDU:
        raise ValueError(f"ASDU of {len(out)} octets exceeds {MAX_ASDU}")
    return bytes(out)


def _encode_element(type_id: int, value: object, flags: int) -> bytes:
    if type_id in _FLOAT:
        assert isinstance(value, float | int)
        return _F32.pack(value) + bytes((flags & _QDS_MASK,))
    if type_id in _SINGLE:
        return bytes((int(bool(value)) | (flags & _SIQ_MASK),))
    if type_id in _DOUBLE:
        assert isinstance(value, int)
        return bytes(((value & 3) | (flags & _SIQ_MASK),))
    if type_id in _NORMALISED or type_id == TypeId.M_ME_ND_1:
        assert isinstance(value, float | int)
        raw = round(value * 32768)
        if not -32768 <= raw <= 32767:
            raise ValueError(f"normalised value {value} is outside -1..1-2^-15")
        return _I16.pack(raw) + (b"" if type_id == TypeId.M_ME_ND_1 else bytes((flags & _QDS_MASK,)))
    if type_id in _SCALED:
        assert isinstance(value, int)
        return _I16.pack(value) + bytes((flags & _QDS_MASK,))
    if type_id in _TOTALS:
        assert isinstance(value, int)
        s = (flags & FLAG_IV) | (0x20 if flags & FLAG_CY else 0) | (0x40 if flags & FLAG_CA else 0)
        return _I32.pack(value) + bytes((s | ((flags >> 16) & 0x1F),))
    if type_id in _QUALIFIER:
        assert isinstance(value, int)
        return bytes((value & 0xFF,))
    assert isinstance(value, Cp56)  # C_CS_NA_1
    return value.encode()


def encode_frame(frame: Frame) -> bytes:
    if isinstance(frame, IFrame):
        if len(frame.asdu) > MAX_ASDU:
            raise ValueError(f"ASDU of {len(frame.asdu)} octets exceeds {MAX_ASDU}")
        ns, nr = (frame.ns % SEQ_MOD) << 1, (frame.nr % SEQ_MOD) << 1
        return bytes((START, 4 + len(frame.asdu), ns & 0xFF, ns >> 8, nr & 0xFF, nr >> 8)) + frame.asdu
    if isinstance(frame, SFrame):
        nr = (frame.nr % SEQ_MOD) << 1
        return bytes((START, 4, 0x01, 0, nr & 0xFF, nr >> 8))
    return bytes((START, 4, int(frame.func), 0, 0, 0))


_UFUNCS = {int(u): u for u in UFunc}


class Deframer:
    """Splits a TCP byte stream into APDUs, however the stream is cut; holds at most one partial APDU.

    :meth:`feed` returns the complete frames.  Garbage breaks the stream for good (the connection it
    reads must be closed): the frames before it are still returned, and :attr:`error` says what was
    wrong; a feed that finds garbage before any frame, or any feed after, raises :class:`FrameError`."""

    __slots__ = ("_buf", "error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.error: FrameError | None = None

    @property
    def pending(self) -> int:
        """Octets of an APDU not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if self.error is not None:
            raise self.error
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        at = 0
        n = len(buf)
        try:
            while at < n:
                if buf[at] != START:
                    raise FrameError(f"start octet 0x{buf[at]:02X} instead of 0x68")
                if n - at < 2:
                    break
                length = buf[at + 1]
                if not 4 <= length <= MAX_APDU:
                    raise FrameError(f"APDU length {length} outside 4..253")
                end = at + 2 + length
                if end > n:
                    break
                frames.append(_control(buf, at + 2, length))
                at = end
        except FrameError as err:
            self.error = err
            buf.clear()
            if not frames:
                raise
            return frames  # the good frames before the garbage are not lost
        del buf[:at]
        return frames


def _control(buf: bytearray, at: int, length: int) -> Frame:
    c1, c2, c3, c4 = buf[at], buf[at + 1], buf[at + 2], buf[at + 3]
    if not c1 & 1:
        if c3 & 1:
            raise FrameError("I-format with bit 0 of the third control octet set")
        if length == 4:
            raise FrameError("I-format without an ASDU")
        return IFrame((c1 | (c2 << 8)) >> 1, (c3 | (c4 << 8)) >> 1, bytes(buf[at + 4:at + length]))
    if length != 4:
        raise FrameError(f"{'S' if c1 & 3 == 1 else 'U'}-format APDU of length {length}, not 4")
    if c1 & 3 == 1:
        if c1 != 1 or c2 or c3 & 1:
            raise FrameError("S-format with reserved bits set")
        return SFrame((c3 | (c4 << 8)) >> 1)
    func = _UFUNCS.get(c1)
    if func is None or c2 or c3 or c4:
        raise FrameError(f"U-format control field {c1:02X} {c2:02X} {c3:02X} {c4:02X}")
    return UFrame(func)
