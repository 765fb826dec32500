"""Decoding register blocks into raw values (pure, no I/O).

A block is turned into bytes once; each numeric point then needs one ``struct.unpack_from`` at a
precomputed offset.  Word and byte orders are handled by permuting the value's bytes into
big-endian (ABCD) before unpacking, so every layout shares one code path.  The rarer kinds
(bits in a register, BCD, strings, enum maps) take a slower per-field path.
"""

from __future__ import annotations

import array
import functools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from drivers.modbus.config import ByteOrder, DataType, StringOrder
from gateway.core.point import Quality, SampleBatch, good_samples
from gateway.core.values import ENCODING_ERROR, StringEncoding, decode_text

__all__ = ["BitDecoder", "Decoder", "Field", "bcd_value", "permutation", "registers_to_bytes"]

_FORMAT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.INT64: ">q",
    DataType.UINT64: ">Q",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
    DataType.BCD16: ">H",
    DataType.BCD32: ">I",
    DataType.BOOL: ">H",
}

Value = int | float | bool | str | None


def permutation(order: ByteOrder, size: int) -> tuple[int, ...] | None:
    """Positions, in wire order, of the big-endian bytes A B C D ... (None for ABCD)."""
    natural = list(range(size))
    if order is ByteOrder.ABCD:
        return None
    if size == 2:
        # a single register is big-endian on the wire, except with a byte swap
        return (1, 0) if order in (ByteOrder.BADC, ByteOrder.DCBA) else None
    if order is ByteOrder.DCBA:
        return tuple(reversed(natural))
    if order is ByteOrder.BADC:
        return tuple(i ^ 1 for i in natural)
    # CDAB: words in reverse order, bytes inside a word big-endian
    words = [natural[i : i + 2] for i in range(0, size, 2)]
    return tuple(b for w in reversed(words) for b in w)


def bcd_value(raw: int, digits: int) -> int | None:
    """Packed BCD to its number; None when a nibble is not a decimal digit (the sample goes bad)."""
    value = 0
    for shift in range((digits - 1) * 4, -4, -4):
        nibble = (raw >> shift) & 0xF
        if nibble > 9:
            return None
        value = value * 10 + nibble
    return value


@dataclass(frozen=True, slots=True)
class Field:
    index: int  # point index in the catalog
    offset: int  # byte offset in the block (bit offset for coil / discrete-input blocks)
    data_type: DataType
    order: ByteOrder = ByteOrder.ABCD
    bit: int | None = None
    length: int = 0  # registers, strings only
    string_order: StringOrder = StringOrder.AB
    encoding: StringEncoding = StringEncoding.UTF_8  # strings only: how the device's bytes are read
    enum: Mapping[int, str] | None = None


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    return struct.pack(f">{len(registers)}H", *registers)


class _Run:
    """Non-overlapping plain fields of one endianness, unpacked with one Struct call per block."""

    __slots__ = ("indices", "start", "struct")

    def __init__(self, fields: list[tuple[int, str, int, int]], little: bool) -> None:
        # fields: (offset, format char, size, point index), sorted by offset, not overlapping
        fmt = ["<" if little else ">"]
        pos = self.start = fields[0][0]
        for off, char, size, _ in fields:
            if off > pos:
                fmt.append(f"{off - pos}x")
            fmt.append(char)
            pos = off + size
        self.struct = _struct("".join(fmt))
        self.indices = tuple(f[3] for f in fields)


@functools.lru_cache(maxsize=4096)
def _struct(fmt: str) -> struct.Struct:
    """One Struct per layout: devices of one type (one register map) share it (about 1 KB each)."""
    return struct.Struct(fmt)


def _runs(fields: list[tuple[int, str, int, int]], little: bool) -> list[_Run]:
    """Split sorted fields into runs without overlaps (aliases of one register go to later runs)."""
    runs: list[list[tuple[int, str, int, int]]] = []
    for f in sorted(fields):
        for run in runs:
            last = run[-1]
            if f[0] >= last[0] + last[2]:
                run.append(f)
                break
        else:
            runs.append([f])
    return [_Run(r, little) for r in runs]


class Decoder:
    """Decodes every field of one register block into samples (or (index, value, bad reason) triples)."""

    def __init__(self, fields: Sequence[Field]) -> None:
        # Every byte order of a plain number is a plain unpack: ABCD / DCBA read the block as is
        # (big / little endian); BADC / CDAB read it after swapping the bytes of every register once
        # per block (big / little endian).  All plain fields of one endianness are one Struct with
        # pad bytes for the gaps, so a 125-register block is one unpack_from call, not 125.
        groups: dict[tuple[bool, bool], list[tuple[int, str, int, int]]] = {}
        self._special: list[tuple[Field, struct.Struct | None, tuple[int, ...] | None]] = []
        for f in fields:
            if f.data_type is DataType.STRING:
                self._special.append((f, None, None))
                continue
            st = struct.Struct(_FORMAT[f.data_type])
            if f.enum is None and f.data_type in _PLAIN:
                little = f.order in (ByteOrder.DCBA, ByteOrder.CDAB)
                swapped = f.order in (ByteOrder.BADC, ByteOrder.CDAB)
                groups.setdefault((swapped, little), []).append((f.offset, _FORMAT[f.data_type][1], st.size, f.index))
            else:
                self._special.append((f, st, permutation(f.order, st.size)))
        self._plain = [run for (sw, little), fs in groups.items() if not sw for run in _runs(fs, little)]
        self._swapped = [run for (sw, little), fs in groups.items() if sw for run in _runs(fs, little)]

    def samples(self, data: bytes, ts: int) -> SampleBatch:
        """The block's points as samples ``(index, ts, value, quality, reason)``: the hot path."""
        good = Quality.GOOD
        out: SampleBatch = []
        for run in self._plain:
            block = good_samples(run.indices, ts, run.struct.unpack_from(data, run.start))
            if out:
                out += block
            else:
                out = block  # the usual block of one run: its list, no copy
        if self._swapped:
            swapped = _swap_words(data)
            for run in self._swapped:
                out += good_samples(run.indices, ts, run.struct.unpack_from(swapped, run.start))
        for f, st, perm in self._special:
            i, v, why = _decode_special(f, st, perm, data)
            out.append((i, ts, v, good, None) if why is None else (i, ts, None, Quality.BAD, why))
        return out

    def decode(self, data: bytes) -> list[tuple[int, Value, str | None]]:
        """(index, value, bad reason or None) per field: the form the table-driven tests check."""
        return [(i, v, why) for i, _ts, v, _q, why in self.samples(data, 0)]


def _swap_words(data: bytes) -> bytes:
    words = array.array("H", data[: len(data) - len(data) % 2])
    words.byteswap()
    return words.tobytes()


_PLAIN = frozenset(
    {
        DataType.INT16,
        DataType.UINT16,
        DataType.INT32,
        DataType.UINT32,
        DataType.INT64,
        DataType.UINT64,
        DataType.FLOAT32,
        DataType.FLOAT64,
    }
)


def _decode_special(
    f: Field, st: struct.Struct | None, perm: tuple[int, ...] | None, data: bytes
) -> tuple[int, Value, str | None]:
    if st is None:  # string
        raw = data[f.offset : f.offset + 2 * f.length]
        if f.string_order is StringOrder.BA:
            raw = bytes(raw[i ^ 1] for i in range(len(raw)))
        try:
            text = decode_text(raw.split(b"\x00", 1)[0], f.encoding).rstrip(" ")
        except UnicodeDecodeError:  # not text in the device's string_encoding: this point only goes bad
            return f.index, None, ENCODING_ERROR
        return f.index, text, None
    raw = data[f.offset : f.offset + st.size]
    if perm is not None:
        raw = bytes(raw[p] for p in perm)
    value: int | float = st.unpack(raw)[0]
    dt = f.data_type
    if dt is DataType.BOOL:
        return f.index, bool((int(value) >> (f.bit or 0)) & 1), None
    if dt in (DataType.BCD16, DataType.BCD32):
        bcd = bcd_value(int(value), 4 if dt is DataType.BCD16 else 8)
        if bcd is None:
            return f.index, None, "invalid_bcd"
        value = bcd
    if f.enum is not None:
        label = f.enum.get(int(value))
        if label is None:
            return f.index, None, f"unmapped_enum_{int(value)}"
        return f.index, label, None
    return f.index, value, None


class BitDecoder:
    """Picks the points' bits out of one coil / discrete-input block."""

    def __init__(self, fields: Sequence[Field]) -> None:
        self._fields = [(f.index, f.offset) for f in fields]
        self._packed = [(f.index, f.offset >> 3, 1 << (f.offset & 7)) for f in fields]

    def decode(self, bits: Sequence[bool]) -> list[tuple[int, Value, str | None]]:
        return [(i, bool(bits[off]), None) for i, off in self._fields]

    def decode_packed(self, data: bytes) -> list[tuple[int, Value, str | None]]:
        """Bits as on the wire: eight per byte, the first bit in the least significant position."""
        return [(i, bool(data[byte] & mask), None) for i, byte, mask in self._packed]
