"""S7 addresses as engineers write them, parsed into (area, DB, byte, bit, size): pure, no I/O.

Accepted forms (case-insensitive, an optional leading ``%`` as TIA Portal writes it)::

    DB10.DBX2.3   DB10.DBB4   DB1.DBW0   DB10.DBD4      data blocks
    M0.1  MX0.1   MB10   MW10   MD20                     bit memory (merker)
    I0.0  IX0.0   IB2    IW64   ID4                       process image inputs
    Q0.0  QX0.0   QB2    QW64   QD4                       process image outputs

The letter after the area is the size: X (bit, needs ``.bit`` 0..7), B (byte), W (word, 2 bytes),
D (double word, 4 bytes).  The size must agree with the point's data type (see
:func:`drivers.s7.config.S7Point`); types without a letter of their own (LREAL, STRING, WSTRING,
DATE_AND_TIME) are addressed by their first byte, ``DB10.DBB20``.  Every error names the address
and the character where it goes wrong.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["Address", "AddressError", "Area", "Size", "parse_address"]

MAX_BYTE = 65_535  # standard-access DBs and the M / I / Q areas are at most 64 KiB
MAX_DB = 65_535


class Area(enum.StrEnum):
    DB = "DB"
    M = "M"  # bit memory
    I = "I"  # noqa: E741  (the inputs' name in every Siemens manual)
    Q = "Q"

    @property
    def code(self) -> int:
        """The S7comm area code of a read-variable item."""
        return _AREA_CODE[self]


_AREA_CODE = {Area.I: 0x81, Area.Q: 0x82, Area.M: 0x83, Area.DB: 0x84}


class Size(enum.StrEnum):
    BIT = "X"
    BYTE = "B"
    WORD = "W"
    DWORD = "D"

    @property
    def width(self) -> int:
        return {Size.BIT: 1, Size.BYTE: 1, Size.WORD: 2, Size.DWORD: 4}[self]


class AddressError(ValueError):
    """A malformed S7 address; the message names the address and the position."""


@dataclass(frozen=True, slots=True)
class Address:
    area: Area
    db: int  # 0 outside data blocks
    byte: int
    bit: int | None  # only for Size.BIT
    size: Size

    def __str__(self) -> str:
        head = f"DB{self.db}.DB" if self.area is Area.DB else self.area.value
        tail = f"{self.byte}.{self.bit}" if self.size is Size.BIT else str(self.byte)
        return f"{head}{self.size.value}{tail}"


_SIZES = "X, B, W or D"


def _fail(text: str, pos: int, what: str) -> AddressError:
    where = f"{text[pos]!r} at position {pos + 1}" if pos < len(text) else "at the end"
    return AddressError(f"S7 address {text!r}: {where}: {what}")


_NUM = re.compile(r"\d+")


def _number(text: str, pos: int, what: str) -> tuple[int, int]:
    """The digits at ``pos`` of ``text`` (as written) and the position after them."""
    m = _NUM.match(text, pos)
    if m is None:
        raise _fail(text, pos, f"expected {what} (digits)")
    return int(m.group()), m.end()


def parse_address(text: str) -> Address:
    """``"DB10.DBD4"`` -> Address(DB, 10, 4, None, DWORD); raises :class:`AddressError`."""
    if not isinstance(text, str):
        raise AddressError(f"S7 address must be text such as 'DB10.DBD4', not {text!r}")
    src = text.strip()
    if not src.isascii():
        pos = next(i for i, ch in enumerate(src) if not ch.isascii())
        raise _fail(src, pos, "not part of an S7 address (letters, digits and '.' only)")
    s = src.upper()
    if not s:
        raise AddressError("S7 address is empty; write e.g. 'DB10.DBD4', 'M0.1' or 'IW64'")
    pos = 1 if s.startswith("%") else 0
    db = 0
    if s.startswith("DB", pos):
        db, pos = _number(src, pos + 2, "the data block number after 'DB'")
        if not 1 <= db <= MAX_DB:
            raise _fail(src, pos - 1, f"data block number {db} is outside 1..{MAX_DB}")
        if not s.startswith(".", pos):
            raise _fail(src, pos, "expected '.DB' after the data block number (e.g. 'DB10.DBD4')")
        if not s.startswith(".DB", pos):
            raise _fail(src, pos + 1, "expected 'DB' after the '.' (e.g. 'DB10.DBW2')")
        pos += 3
        area = Area.DB
    elif pos < len(s) and s[pos] in "MIQ":
        area = Area(s[pos])
        pos += 1
    elif pos < len(s) and s[pos] in "EA":
        german = {"E": "I", "A": "Q"}[s[pos]]
        raise _fail(src, pos, f"German mnemonics are not accepted: write {german!r} (English: I inputs, Q outputs)")
    else:
        raise _fail(src, pos, "expected an area: DB<n>.DB..., M, I or Q")
    if pos < len(s) and s[pos] in "XBWD":
        size = Size(s[pos])
        pos += 1
    elif pos < len(s) and s[pos].isdigit() and area is not Area.DB:
        size = Size.BIT  # M0.1, I0.0, Q1.7: the bit form without X
    else:
        raise _fail(src, pos, f"expected a size letter {_SIZES} (bit, byte, word, double word)")
    byte, pos = _number(src, pos, "the byte offset")
    if byte > MAX_BYTE:
        raise _fail(src, pos - 1, f"byte offset {byte} is outside 0..{MAX_BYTE}")
    bit = None
    if size is Size.BIT:
        if not s.startswith(".", pos):
            raise _fail(src, pos, f"a bit address needs '.bit' (0..7), e.g. '{src[:pos]}.0'")
        bit, pos = _number(src, pos + 1, "the bit number 0..7")
        if bit > 7:
            raise _fail(src, pos - 1, f"bit {bit} is outside 0..7 (a byte has 8 bits)")
    elif s.startswith(".", pos):
        what = size.name.lower()
        raise _fail(src, pos, f"only bit addresses (size X) take '.bit'; a {what} address ends at its byte")
    if pos != len(s):
        raise _fail(src, pos, "unexpected text after the address")
    return Address(area, db, byte, bit, size)
