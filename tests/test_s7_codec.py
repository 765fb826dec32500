"""S7 values from bytes, checked against hand-made memory and against python-snap7's own getters
(snap7.util: an implementation of the same layouts written by other people)."""

from __future__ import annotations

import datetime as dt
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from snap7 import util

from drivers.s7.codec import decode
from drivers.s7.config import DataType
from gateway.core.values import StringEncoding


@pytest.mark.parametrize(("kind", "raw", "bit", "want"), [
    (DataType.BOOL, b"\x08", 3, True),
    (DataType.BOOL, b"\xf7", 3, False),
    (DataType.BYTE, b"\xff", None, 255),
    (DataType.WORD, b"\xff\xfe", None, 65534),
    (DataType.INT, b"\xff\xfe", None, -2),
    (DataType.DWORD, b"\xff\xff\xff\xfe", None, 4294967294),
    (DataType.DINT, b"\x80\x00\x00\x00", None, -2147483648),
    (DataType.REAL, struct.pack(">f", 12.5), None, 12.5),
    (DataType.LREAL, struct.pack(">d", -620.125), None, -620.125),
])
def test_numbers_big_endian(kind: DataType, raw: bytes, bit: int | None, want: object) -> None:
    assert decode(kind, raw, bit) == (want, None)


@pytest.mark.parametrize(("raw", "why"), [(struct.pack(">f", math.nan), "nan"), (struct.pack(">f", -math.inf), "inf")])
def test_non_finite_real_is_bad(raw: bytes, why: str) -> None:
    assert decode(DataType.REAL, raw) == (None, why)


def test_string_header() -> None:
    raw = bytes((10, 5)) + b"skip-" + b"\x00" * 5
    assert decode(DataType.STRING, raw, length=10) == ("skip-", None)
    assert decode(DataType.STRING, bytes((10, 0)) + bytes(10), length=10) == ("", None)
    # actual length beyond the maximum, or beyond what the config declared: never read past the string
    assert decode(DataType.STRING, bytes((10, 11)) + bytes(10), length=10) == (None, "string_header_invalid")
    assert decode(DataType.STRING, bytes((20, 12)) + bytes(10), length=10) == (None, "string_header_invalid")


def test_string_encodings() -> None:
    text = "主井"
    gbk = text.encode("gbk")
    raw = bytes((8, len(gbk))) + gbk + bytes(8 - len(gbk))
    assert decode(DataType.STRING, raw, length=8, encoding=StringEncoding.GBK) == (text, None)
    assert decode(DataType.STRING, raw, length=8, encoding=StringEncoding.UTF_8) == (None, "encoding_error")
    assert decode(DataType.STRING, bytes((2, 2)) + b"\xe9t", length=2) == ("ét", None)  # latin-1: the default


def test_wstring() -> None:
    text = "主井提升机"
    raw = struct.pack(">HH", 10, 5) + text.encode("utf-16-be") + bytes(10)
    assert decode(DataType.WSTRING, raw, length=10) == (text, None)
    too_long = struct.pack(">HH", 10, 11) + bytes(20)
    assert decode(DataType.WSTRING, too_long, length=10) == (None, "string_header_invalid")
    lone = struct.pack(">HH", 1, 1) + b"\xd8\x00"  # a lone high surrogate
    assert decode(DataType.WSTRING, lone, length=1) == (None, "encoding_error")


def test_date_and_time() -> None:
    raw = bytes((0x26, 0x12, 0x05, 0x23, 0x07, 0x59, 0x12, 0x37))  # 2026-12-05 23:07:59.123, weekday 7
    assert decode(DataType.DATE_AND_TIME, raw) == ("2026-12-05T23:07:59.123", None)
    assert decode(DataType.DATE_AND_TIME, bytes((0x95, 1, 1, 0, 0, 0, 0, 0x01))) == ("1995-01-01T00:00:00.000", None)
    assert decode(DataType.DATE_AND_TIME, bytes((0x26, 0x1A, 1, 0, 0, 0, 0, 1))) == (None, "invalid_bcd")
    assert decode(DataType.DATE_AND_TIME, bytes((0x26, 0x02, 0x30, 0, 0, 0, 0, 1))) == (None, "invalid_date")
    assert decode(DataType.DATE_AND_TIME, bytes((0x26, 1, 1, 0, 0, 0, 0, 0xA1))) == (None, "invalid_bcd")


# --- against python-snap7's getters --------------------------------------------------------------------


@given(st.binary(min_size=8, max_size=8), st.integers(0, 7))
def test_numbers_agree_with_snap7(raw: bytes, bit: int) -> None:
    buf = bytearray(raw)
    assert decode(DataType.BOOL, raw[:1], bit)[0] == util.get_bool(buf, 0, bit)
    assert decode(DataType.BYTE, raw[:1])[0] == util.get_byte(buf, 0)
    assert decode(DataType.WORD, raw[:2])[0] == util.get_word(buf, 0)
    assert decode(DataType.INT, raw[:2])[0] == util.get_int(buf, 0)
    assert decode(DataType.DWORD, raw[:4])[0] == util.get_dword(buf, 0)
    assert decode(DataType.DINT, raw[:4])[0] == util.get_dint(buf, 0)
    for kind, theirs in ((DataType.REAL, util.get_real(buf, 0)), (DataType.LREAL, util.get_lreal(buf, 0))):
        ours, why = decode(kind, raw[: 4 if kind is DataType.REAL else 8])
        if math.isfinite(theirs):
            assert ours == theirs
        else:
            assert why in ("nan", "inf")


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=20))
def test_string_agrees_with_snap7(text: str) -> None:
    buf = bytearray(22)
    util.set_string(buf, 0, text, 20)
    assert decode(DataType.STRING, bytes(buf), length=20) == (util.get_string(buf, 0), None)


@given(st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2089, 12, 31)))
def test_date_and_time_agrees_with_snap7(when: dt.datetime) -> None:
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    buf = bytearray(8)
    util.set_dt(buf, 0, when)
    assert decode(DataType.DATE_AND_TIME, bytes(buf)) == (when.isoformat(timespec="milliseconds"), None)


@given(st.binary(min_size=8, max_size=40), st.integers(0, 7), st.integers(0, 32),
       st.sampled_from(list(DataType)), st.integers(1, 16))
def test_the_drivers_readers_agree_with_decode(raw: bytes, bit: int, pad: int, kind: DataType, length: int) -> None:
    """What the driver calls per point (a reader at an offset of the answer) gives decode's results."""
    from drivers.s7.codec import reader

    width = kind.width(length)
    buf = bytes(pad) + (raw * (width // len(raw) + 1))[:width] + bytes(3)
    want = decode(kind, buf[pad:pad + width], bit, length, StringEncoding.GBK)
    got = reader(kind, bit, length, StringEncoding.GBK)(buf, pad)
    assert got == want or (got[0] != got[0] and want[0] != want[0])
