"""Register maps of Modbus equipment stubs: one table drives the image, the config and the oracle.

A stub lists its :class:`Register` entries and computes raw (wire) values per tick; this module
encodes them into the four Modbus tables with its own byte shuffling (deliberately not the
gateway's decoder, so a shared mistake cannot hide), emits the point config an engineer would
write, and the exact engineering values the gateway must deliver.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Image", "Register", "Stub", "encode_value"]

_FORMATS = {
    "int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "int64": ">q", "uint64": ">Q",
    "float32": ">f", "float64": ">d", "bcd16": ">H", "bcd32": ">I",
}
_TABLES = ("coil", "discrete_input", "holding_register", "input_register")


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    table: str
    address: int
    data_type: str
    byte_order: str = "ABCD"
    scale: float = 1.0
    unit: str = ""
    bit: int | None = None
    length: int | None = None  # strings: registers
    string_order: str = "AB"
    enum: Mapping[int, str] | None = None

    @property
    def words(self) -> int:
        if self.table in ("coil", "discrete_input") or self.bit is not None:
            return 1
        if self.data_type == "string":
            return self.length or 0
        return struct.calcsize(_FORMATS[self.data_type]) // 2


@dataclass(slots=True)
class Image:
    """The four tables of one device at one tick (index = 0-based PDU address)."""

    coils: list[bool] = field(default_factory=list)
    discrete_inputs: list[bool] = field(default_factory=list)
    holding_registers: list[int] = field(default_factory=list)
    input_registers: list[int] = field(default_factory=list)


def _reorder(big_endian: bytes, order: str) -> bytes:
    """Bytes A B C D ... (big-endian) as the device puts them on the wire in ``order``."""
    if order == "ABCD":
        return big_endian
    if len(big_endian) == 2:  # one register: only a byte swap changes it
        return big_endian[::-1] if order in ("DCBA", "BADC") else big_endian
    if order == "DCBA":
        return big_endian[::-1]
    if order == "BADC":
        return b"".join(big_endian[i : i + 2][::-1] for i in range(0, len(big_endian), 2))
    if order == "CDAB":
        return b"".join(big_endian[i : i + 2] for i in range(len(big_endian) - 2, -2, -2))
    raise ValueError(f"unknown byte order {order!r}")


def _bcd(value: int, digits: int) -> int:
    text = f"{value:0{digits}d}"
    if len(text) > digits:
        raise ValueError(f"{value} does not fit {digits} BCD digits")
    return int(text, 16)


def encode_value(reg: Register, raw: int | float | str) -> list[int]:
    """The registers of one raw value, in the register's byte order."""
    if reg.data_type == "string":
        data = str(raw).encode("latin-1")[: 2 * (reg.length or 0)].ljust(2 * (reg.length or 0), b"\x00")
        if reg.string_order == "BA":
            data = b"".join(data[i : i + 2][::-1] for i in range(0, len(data), 2))
        return list(struct.unpack(f">{len(data) // 2}H", data))
    if reg.data_type == "bcd16":
        raw = _bcd(int(raw), 4)
    elif reg.data_type == "bcd32":
        raw = _bcd(int(raw), 8)
    wire = _reorder(struct.pack(_FORMATS[reg.data_type], raw), reg.byte_order)
    return list(struct.unpack(f">{len(wire) // 2}H", wire))


def tick_rng(seed: int, tick: int) -> random.Random:
    """The stubs' source of noise: a function of (seed, tick) only, so any tick can be replayed."""
    return random.Random(seed * 1_000_003 + tick)


class Stub:
    """Base of the Modbus equipment stubs: subclasses set REGISTERS and implement ``raw``."""

    REGISTERS: tuple[Register, ...] = ()

    def __init__(self, seed: int = 1) -> None:
        self.seed = seed

    def raw(self, tick: int) -> dict[str, int | float | str | bool]:
        raise NotImplementedError

    def image(self, tick: int) -> Image:
        raw = self.raw(tick)
        sizes = {t: 0 for t in _TABLES}
        for reg in self.REGISTERS:
            sizes[reg.table] = max(sizes[reg.table], reg.address + reg.words)
        img = Image(
            coils=[False] * sizes["coil"],
            discrete_inputs=[False] * sizes["discrete_input"],
            holding_registers=[0] * sizes["holding_register"],
            input_registers=[0] * sizes["input_register"],
        )
        words = {"holding_register": img.holding_registers, "input_register": img.input_registers}
        bits = {"coil": img.coils, "discrete_input": img.discrete_inputs}
        for reg in self.REGISTERS:
            value = raw[reg.name]
            if reg.table in bits:
                bits[reg.table][reg.address] = bool(value)
            elif reg.bit is not None:
                table = words[reg.table]
                table[reg.address] = table[reg.address] & ~(1 << reg.bit) | (int(bool(value)) << reg.bit)
            else:
                assert not isinstance(value, bool)
                words[reg.table][reg.address : reg.address + reg.words] = encode_value(reg, value)
        return img

    def expected(self, tick: int) -> dict[str, int | float | str | bool]:
        """Point name -> the exact engineering value the gateway must deliver (raw x scale)."""
        out: dict[str, int | float | str | bool] = {}
        for reg in self.REGISTERS:
            value = self.raw(tick)[reg.name]
            if reg.table in ("coil", "discrete_input") or reg.bit is not None:
                out[reg.name] = bool(value)
            elif reg.enum is not None:
                out[reg.name] = reg.enum[int(value)]
            elif reg.data_type == "string":
                out[reg.name] = str(value)
            elif reg.data_type == "float32":
                out[reg.name] = struct.unpack(">f", struct.pack(">f", value))[0] * reg.scale
            else:
                assert not isinstance(value, str)
                out[reg.name] = value * reg.scale if reg.scale != 1.0 else value
        return out

    @classmethod
    def point_config(cls, group_of: Mapping[str, str] | None = None) -> list[dict[str, object]]:
        """The point list a commissioning engineer writes for this equipment (config dicts)."""
        points: list[dict[str, object]] = []
        for reg in cls.REGISTERS:
            p: dict[str, object] = {"name": reg.name, "table": reg.table, "address": reg.address}
            if reg.table in ("coil", "discrete_input") or reg.bit is not None:
                p["data_type"] = "bool"
                if reg.bit is not None:
                    p["bit"] = reg.bit
            else:
                p["data_type"] = reg.data_type
                if reg.byte_order != "ABCD":
                    p["byte_order"] = reg.byte_order
            if reg.scale != 1.0:
                p["scale"] = reg.scale
            if reg.unit:
                p["unit"] = reg.unit
            if reg.length is not None:
                p["length"] = reg.length
                p["string_order"] = reg.string_order
            if reg.enum is not None:
                p["enum"] = {str(k): v for k, v in reg.enum.items()}
            if group_of and reg.name in group_of:
                p["group"] = group_of[reg.name]
            points.append(p)
        return points
