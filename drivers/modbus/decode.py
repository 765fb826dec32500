"""Decoding register blocks into raw values (pure, no I/O).

A block is turned into bytes once; each point then needs one ``struct.unpack_from`` at a
precomputed offset.  Word and byte orders are handled by permuting the value's bytes into
big-endian (ABCD) before unpacking.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.modbus.config import ByteOrder, DataType

__all__ = ["Decoder", "Field", "registers_to_bytes"]

_FORMAT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}


def _permutation(order: ByteOrder, size: int) -> tuple[int, ...] | None:
    """Positions, in wire order, of the big-endian bytes A B C D ... (None for ABCD)."""
    natural = list(range(size))
    if order is ByteOrder.ABCD or size == 2:
        # a single register is always big-endian on the wire, except with a byte swap
        if order in (ByteOrder.BADC, ByteOrder.DCBA) and size == 2:
            return (1, 0)
        return None
    if order is ByteOrder.DCBA:
        return tuple(reversed(natural))
    if order is ByteOrder.BADC:
        return tuple(i ^ 1 for i in natural)
    # CDAB: words in reverse order, bytes inside a word big-endian
    words = [natural[i : i + 2] for i in range(0, size, 2)]
    return tuple(b for w in reversed(words) for b in w)


@dataclass(frozen=True, slots=True)
class Field:
    index: int  # point index in the catalog
    offset: int  # byte offset in the block
    data_type: DataType
    order: ByteOrder


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    return struct.pack(f">{len(registers)}H", *registers)


class Decoder:
    """Decodes every field of one block."""

    def __init__(self, fields: list[Field]) -> None:
        self._plain: list[tuple[int, struct.Struct, int]] = []
        self._permuted: list[tuple[int, struct.Struct, int, tuple[int, ...]]] = []
        for f in fields:
            st = struct.Struct(_FORMAT[f.data_type])
            perm = _permutation(f.order, st.size)
            if perm is None:
                self._plain.append((f.index, st, f.offset))
            else:
                self._permuted.append((f.index, st, f.offset, perm))

    def decode(self, data: bytes) -> list[tuple[int, int | float]]:
        out: list[tuple[int, int | float]] = [(i, st.unpack_from(data, off)[0]) for i, st, off in self._plain]
        for i, st, off, perm in self._permuted:
            raw = data[off : off + st.size]
            out.append((i, st.unpack(bytes(raw[p] for p in perm))[0]))
        return out
