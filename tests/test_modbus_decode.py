"""Decoding every data type in every byte order, against literal register images from vendor manuals."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.config import ByteOrder, DataType, StringOrder
from drivers.modbus.decode import BitDecoder, Decoder, Field, bcd_value, registers_to_bytes
from gateway.core.point import Quality, good_samples

A, B, C, D = ByteOrder.ABCD, ByteOrder.BADC, ByteOrder.CDAB, ByteOrder.DCBA

# (data type, byte order, registers on the wire, expected value): written out by hand, not computed
CASES = [
    (DataType.UINT16, A, [0x0102], 0x0102),
    (DataType.UINT16, B, [0x0201], 0x0102),
    (DataType.UINT16, C, [0x0102], 0x0102),
    (DataType.UINT16, D, [0x0201], 0x0102),
    (DataType.INT16, A, [0xFFFE], -2),
    (DataType.INT16, B, [0xFEFF], -2),
    (DataType.UINT32, A, [0x0102, 0x0304], 0x01020304),
    (DataType.UINT32, D, [0x0403, 0x0201], 0x01020304),
    (DataType.UINT32, B, [0x0201, 0x0403], 0x01020304),
    (DataType.UINT32, C, [0x0304, 0x0102], 0x01020304),
    (DataType.INT32, A, [0xFFFF, 0xFFFE], -2),
    (DataType.INT32, C, [0xFFFE, 0xFFFF], -2),
    (DataType.FLOAT32, A, [0x3F80, 0x0000], 1.0),
    (DataType.FLOAT32, C, [0x0000, 0x3F80], 1.0),
    (DataType.FLOAT32, B, [0x803F, 0x0000], 1.0),
    (DataType.FLOAT32, D, [0x0000, 0x803F], 1.0),
    (DataType.FLOAT32, A, [0xC148, 0x0000], -12.5),
    (DataType.UINT64, A, [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    (DataType.UINT64, D, [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
    (DataType.UINT64, B, [0x0201, 0x0403, 0x0605, 0x0807], 0x0102030405060708),
    (DataType.UINT64, C, [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
    (DataType.INT64, A, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFD], -3),
    (DataType.INT64, C, [0xFFFD, 0xFFFF, 0xFFFF, 0xFFFF], -3),
    (DataType.FLOAT64, A, [0x3FF0, 0, 0, 0], 1.0),
    (DataType.FLOAT64, D, [0, 0, 0, 0xF03F], 1.0),
    (DataType.FLOAT64, B, [0xF03F, 0, 0, 0], 1.0),
    (DataType.FLOAT64, C, [0, 0, 0, 0x3FF0], 1.0),
    (DataType.BCD16, A, [0x1234], 1234),
    (DataType.BCD16, B, [0x3412], 1234),
    (DataType.BCD32, A, [0x0012, 0x3456], 123456),
    (DataType.BCD32, C, [0x3456, 0x0012], 123456),
]


@pytest.mark.parametrize(("data_type", "order", "registers", "expected"), CASES)
def test_every_type_and_byte_order(
    data_type: DataType, order: ByteOrder, registers: list[int], expected: object
) -> None:
    # put the value after a filler register so the offset matters too
    data = registers_to_bytes([0xAAAA, *registers])
    (got,) = Decoder([Field(7, 2, data_type, order)]).decode(data)
    assert got == (7, expected, None)


def test_bits_in_a_register() -> None:
    data = registers_to_bytes([0b1000_0000_0000_0101])
    fields = [Field(i, 0, DataType.BOOL, bit=b) for i, b in enumerate((0, 1, 2, 15))]
    assert [v for _, v, _ in Decoder(fields).decode(data)] == [True, False, True, True]


def test_bits_of_a_coil_block() -> None:
    bits = [False, True, False, False, True]
    assert BitDecoder([Field(0, 1, DataType.BOOL), Field(1, 4, DataType.BOOL), Field(2, 0, DataType.BOOL)]).decode(
        bits
    ) == [(0, True, None), (1, True, None), (2, False, None)]


@pytest.mark.parametrize(
    ("order", "registers"),
    [(StringOrder.AB, [0x4D49, 0x4E45, 0x2D31, 0x0000]), (StringOrder.BA, [0x494D, 0x454E, 0x312D, 0x0000])],
)
def test_strings(order: StringOrder, registers: list[int]) -> None:
    (got,) = Decoder([Field(0, 0, DataType.STRING, length=4, string_order=order)]).decode(registers_to_bytes(registers))
    assert got == (0, "MINE-1", None)


def test_space_padded_string() -> None:
    (got,) = Decoder([Field(0, 0, DataType.STRING, length=2)]).decode(b"AB  ")
    assert got == (0, "AB", None)


def test_enum_maps_and_unmapped_values_go_bad() -> None:
    labels = {0: "stopped", 1: "running", 3: "fault"}
    dec = Decoder([Field(0, 0, DataType.UINT16, enum=labels), Field(1, 2, DataType.UINT16, enum=labels)])
    assert dec.decode(registers_to_bytes([1, 2])) == [(0, "running", None), (1, None, "unmapped_enum_2")]


def test_invalid_bcd_goes_bad() -> None:
    assert Decoder([Field(0, 0, DataType.BCD16)]).decode(registers_to_bytes([0x12A4])) == [(0, None, "invalid_bcd")]
    assert bcd_value(0x9999, 4) == 9999


def _wire(big_endian: bytes, order: ByteOrder) -> bytes:
    """An independent encoder: the byte layouts spelled out as word/byte operations."""
    words = [big_endian[i : i + 2] for i in range(0, len(big_endian), 2)]
    if order in (ByteOrder.CDAB, ByteOrder.DCBA):
        words.reverse()
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        words = [w[::-1] for w in words]
    return b"".join(words)


@given(
    st.sampled_from(list(ByteOrder)),
    st.sampled_from([("int32", ">i"), ("uint32", ">I"), ("int64", ">q"), ("uint64", ">Q"), ("float64", ">d")]),
    st.data(),
)
def test_roundtrip_through_every_layout(order: ByteOrder, kind: tuple[str, str], data: st.DataObject) -> None:
    name, fmt = kind
    size = struct.calcsize(fmt)
    if fmt == ">d":
        value: int | float = data.draw(st.floats(allow_nan=False))
    else:
        signed = fmt.islower()
        bits = size * 8
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        value = data.draw(st.integers(lo, hi))
    wire = _wire(struct.pack(fmt, value), order)
    (got,) = Decoder([Field(0, 0, DataType(name), order)]).decode(wire)
    assert got == (0, value, None)


def test_aliases_of_one_register_block_decode_each_and_gaps_are_skipped() -> None:
    """Plain fields become one Struct per block; overlapping ones (aliases) go to another run."""
    data = registers_to_bytes([0x0001, 0x0002, 0xFFFF, 0x4049, 0x0FDB])
    fields = [
        Field(0, 0, DataType.UINT32),
        Field(1, 0, DataType.UINT16),
        Field(2, 2, DataType.UINT16),
        Field(3, 4, DataType.INT16),
        Field(4, 6, DataType.FLOAT32),  # after no gap
        Field(5, 0, DataType.UINT32, ByteOrder.CDAB),
        Field(6, 8, DataType.UINT16, ByteOrder.DCBA),
    ]
    got = {i: v for i, v, _ in Decoder(fields).decode(data)}
    assert got == {0: 0x00010002, 1: 1, 2: 2, 3: -1, 4: pytest.approx(3.1415927), 5: 0x00020001, 6: 0xDB0F}


def test_a_block_of_runs_becomes_good_samples_of_its_one_time() -> None:
    """Two runs of plain fields (big and little endian, one swapped) and a special field: every sample
    is (index, ts, value, GOOD, None) in the runs' order, carrying the block's one time object."""
    ts = 1_700_000_000_123_456_789
    fields = [Field(300 + k, 2 * k, DataType.UINT16) for k in range(4)]
    fields += [Field(400, 8, DataType.INT32, C), Field(401, 12, DataType.INT16, D),
               Field(402, 14, DataType.BOOL, bit=3)]
    data = registers_to_bytes([1, 2, 3, 4, 0xFFFE, 0xFFFF, 0x0500, 0x0008])
    out = Decoder(fields).samples(data, ts)
    assert sorted(out) == sorted([(300, ts, 1, Quality.GOOD, None), (301, ts, 2, Quality.GOOD, None),
                                  (302, ts, 3, Quality.GOOD, None), (303, ts, 4, Quality.GOOD, None),
                                  (400, ts, -2, Quality.GOOD, None), (401, ts, 5, Quality.GOOD, None),
                                  (402, ts, True, Quality.GOOD, None)])
    assert all(s[1] is ts for s in out) and [s[0] for s in out[:4]] == [300, 301, 302, 303]


def test_good_samples_refuses_unequal_lengths() -> None:
    ts = 5
    assert good_samples((1, 2), ts, [7, 8.5]) == [(1, 5, 7, Quality.GOOD, None), (2, 5, 8.5, Quality.GOOD, None)]
    with pytest.raises(ValueError, match="zip"):
        good_samples((1, 2), ts, [7])
