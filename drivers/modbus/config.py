"""Config models of the Modbus driver (pure pydantic, no I/O)."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Any, Literal, Self

from gateway.core.errors import ConfigIssue
from gateway.core.line import line_issues as shared_line_issues
from gateway.core.models import Field, model_validator
from gateway.core.schema import DeviceBase, Key, PointBase, check_poll_groups, group_intervals_ms
from gateway.core.values import StringEncoding

__all__ = [
    "ByteOrder",
    "DataType",
    "ModbusDevice",
    "ModbusDeviceBase",
    "ModbusPoint",
    "ModbusRtuDevice",
    "ModbusRtuTcpDevice",
    "ModbusTcpDevice",
    "StringOrder",
    "Table",
    "line_issues",
    "notation_warnings",
    "parse_address",
]


class Table(enum.StrEnum):
    COIL = "coil"  # function code 1
    DISCRETE_INPUT = "discrete_input"  # function code 2
    HOLDING_REGISTER = "holding_register"  # function code 3
    INPUT_REGISTER = "input_register"  # function code 4

    @property
    def is_bit(self) -> bool:
        return self is Table.COIL or self is Table.DISCRETE_INPUT  # identity: `in` compared as str, 2x per point

    @property
    def function_code(self) -> int:
        return _FC[self]


_FC = {Table.COIL: 1, Table.DISCRETE_INPUT: 2, Table.HOLDING_REGISTER: 3, Table.INPUT_REGISTER: 4}


class DataType(enum.StrEnum):
    BOOL = "bool"  # a coil / discrete input, or one bit (`bit`) of a register
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BCD16 = "bcd16"  # 4 decimal digits in one register (0x1234 -> 1234)
    BCD32 = "bcd32"  # 8 decimal digits in two registers, in the point's byte order
    STRING = "string"  # `length` registers, two characters each

    @property
    def registers(self) -> int:
        return _WIDTH[self]


_WIDTH = {
    DataType.BOOL: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
    DataType.BCD16: 1,
    DataType.BCD32: 2,
    DataType.STRING: 1,  # per register of `length`
}


class ByteOrder(enum.StrEnum):
    """Order of the bytes of a multi-register value, named after the big-endian ABCD.

    For 64-bit values the same names mean the matching layouts: ABCD = ABCDEFGH (big-endian),
    DCBA = HGFEDCBA (little-endian), BADC = BADCFEHG (bytes swapped in each word), CDAB =
    GHEFCDAB (word order reversed).
    """

    ABCD = "ABCD"  # big-endian words, big-endian bytes (Modbus default)
    DCBA = "DCBA"  # fully little-endian
    BADC = "BADC"  # bytes swapped inside each word
    CDAB = "CDAB"  # words swapped ("word swap", common on Schneider / Siemens floats)


class StringOrder(enum.StrEnum):
    """Where the two characters of a register sit: AB = first character in the high byte."""

    AB = "AB"
    BA = "BA"


# Vendor notation: 0xxxx coils, 1xxxx discrete inputs, 3xxxx input registers, 4xxxx holding
# registers; 5 digits (40001..49999) or 6 digits (400001..465536), both 1-based.
_NOTATION = re.compile(r"^([0134])x?(\d{4,5})$")
_PREFIX = {"0": Table.COIL, "1": Table.DISCRETE_INPUT, "3": Table.INPUT_REGISTER, "4": Table.HOLDING_REGISTER}


def parse_address(text: str) -> tuple[Table, int]:
    """``"40001"`` / ``"400001"`` / ``"4x0001"`` -> (holding_register, 0): the 1-based notation of manuals."""
    m = _NOTATION.match(text.strip())
    if m is None:
        raise ValueError(
            f"address {text!r} is neither a 0-based number nor 1-based notation such as '40001' or '400001'"
        )
    number = int(m.group(2))
    if number < 1 or number > 65536:
        raise ValueError(f"address {text!r}: register number {number} is outside 1..65536")
    return _PREFIX[m.group(1)], number - 1


class ModbusPoint(PointBase):
    table: Table = Table.HOLDING_REGISTER
    address: int = Field(
        ge=0, le=65535, description="0-based PDU address; a string such as '40001' is converted (and sets table)"
    )
    data_type: DataType = DataType.UINT16
    byte_order: ByteOrder | None = Field(default=None, description="overrides the device's byte_order")
    bit: int | None = Field(default=None, ge=0, le=15, description="bool inside a register: bit 0 = LSB")
    length: int | None = Field(default=None, ge=1, le=125, description="string length in registers")
    string_order: StringOrder = StringOrder.AB
    string_encoding: StringEncoding | None = Field(
        default=None, description="overrides the device's string_encoding (data_type 'string' only)"
    )
    enum: dict[int, str] | None = Field(default=None, description="maps raw integer values to labels")
    group: Key | None = Field(default=None, description="poll group (a key of the device's poll_groups)")

    @model_validator(mode="before")
    @classmethod
    def _notation(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("address"), str) and _NOTATION.match(data["address"]):
            # anything else stays a string, so the error is reported at `.address`
            table, address = parse_address(data["address"])
            given = data.get("table")
            if given is not None and given != table.value:
                raise ValueError(f"address {data['address']!r} is a {table.value}, but table = {given!r}")
            data = {**data, "table": table.value, "address": address}
        return data

    @property
    def registers(self) -> int:
        """Width in registers (or in bits, for coils and discrete inputs)."""
        if self.table.is_bit:
            return 1
        if self.data_type is DataType.STRING:
            return self.length or 0
        return self.data_type.registers

    @model_validator(mode="after")
    def _fits(self) -> Self:
        dt = self.data_type
        if self.table.is_bit and dt is not DataType.BOOL:
            raise ValueError(f"a {self.table} holds single bits: data_type must be 'bool', not {dt!r}")
        if dt is DataType.BOOL and not self.table.is_bit and self.bit is None:
            raise ValueError("a bool in a register needs `bit` (0 = least significant)")
        if self.bit is not None and dt is not DataType.BOOL:
            raise ValueError("`bit` is only for data_type 'bool'")
        if dt is DataType.STRING and self.length is None:
            raise ValueError("a string needs `length` (registers, two characters each)")
        if self.length is not None and dt is not DataType.STRING:
            raise ValueError("`length` is only for data_type 'string'")
        if self.string_encoding is not None and dt is not DataType.STRING:
            raise ValueError("`string_encoding` is only for data_type 'string'")
        if self.enum is not None and dt in (DataType.FLOAT32, DataType.FLOAT64, DataType.STRING, DataType.BOOL):
            raise ValueError(f"an enum map needs an integer data_type, not {dt!r}")
        if self.address + self.registers > 65536:
            raise ValueError(f"a {dt} of {self.registers} registers at address {self.address} runs past 65535")
        return self


class ModbusDeviceBase(DeviceBase):
    """What every Modbus transport shares: the unit, the layout defaults, planning and scheduling."""

    unit_id: int = Field(default=1, ge=0, le=255)
    byte_order: ByteOrder = ByteOrder.ABCD
    string_encoding: StringEncoding = Field(
        default=StringEncoding.UTF_8, description="how `string` points' bytes are read: utf-8, gbk, gb18030, latin-1"
    )
    max_gap: int = Field(default=16, ge=0, le=124, description="unused registers a single read may bridge")
    max_bit_gap: int = Field(default=64, ge=0, le=1999, description="unused coils / inputs a read may bridge")
    retries: int = Field(default=1, ge=0, le=10, description="immediate re-polls after a timeout before 'down'")
    suspend_after_timeouts: int = Field(
        default=2, ge=0, le=100,
        description="polls timed out in a row after which the unit is suspended (tried at a reduced rate; 0: never)",
    )
    suspended_poll_interval_ms: int = Field(
        default=10_000, ge=100, le=3_600_000,
        description="how often a suspended unit is tried: one attempt, in a quiet moment of a shared line",
    )
    poll_groups: dict[Key, int] = Field(
        default_factory=dict, description="group name -> poll interval in ms; points name theirs in `group`"
    )
    points: list[ModbusPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: set[str] = set()
        for p in self.points:
            if p.name in seen:
                raise ValueError(f"two points are named {p.name!r}")
            seen.add(p.name)
        return self

    @model_validator(mode="after")
    def _groups(self) -> Self:
        check_poll_groups(self.poll_groups, [p.group for p in self.points])
        return self

    def group_intervals_ms(self) -> dict[str, int]:
        """Every group that has points -> its interval; "" is the device's own poll_interval_ms."""
        return group_intervals_ms(self.poll_groups, [p.group for p in self.points], self.poll_interval_ms)


class ModbusTcpDevice(ModbusDeviceBase):
    """Modbus TCP (MBAP framing): one TCP connection per device."""

    type: Literal["modbus_tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)


class ModbusRtuTcpDevice(ModbusDeviceBase):
    """RTU frames over TCP (serial device servers, DTUs): devices at one host:port share one connection."""

    type: Literal["modbus_rtu_tcp"]
    host: str
    port: int = Field(ge=1, le=65535)
    unit_id: int = Field(default=1, ge=1, le=247)
    frame_gap_ms: float = Field(default=2.0, ge=0, le=1000, description="silence before each request on the line")


class ModbusRtuDevice(ModbusDeviceBase):
    """Modbus RTU on a serial line: devices on one serial port share it, one request at a time."""

    type: Literal["modbus_rtu"]
    port: str = Field(min_length=1, description="serial device, e.g. /dev/ttyUSB0 or /dev/ttyS1")
    unit_id: int = Field(default=1, ge=1, le=247)
    baudrate: int = Field(default=9600, ge=300, le=921_600)
    parity: Literal["N", "E", "O"] = Field(default="E", description="the Modbus spec's default is even parity")
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    frame_gap_ms: float | None = Field(
        default=None, ge=0, le=1000, description="silence before each request; default 3.5 characters (>= 1.75 ms)"
    )

    @model_validator(mode="after")
    def _rtu_frame(self) -> Self:
        if self.bytesize != 8:
            raise ValueError("Modbus RTU needs bytesize = 8 (7 data bits is Modbus ASCII)")
        return self

    def effective_frame_gap_s(self) -> float:
        if self.frame_gap_ms is not None:
            return self.frame_gap_ms / 1000
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return 0.00175 if self.baudrate > 19200 else 3.5 * bits / self.baudrate


ModbusDevice = ModbusTcpDevice | ModbusRtuTcpDevice | ModbusRtuDevice

# keys that must agree between devices sharing one line
_LINE_KEYS = {
    "modbus_rtu": ("baudrate", "parity", "stopbits", "bytesize", "frame_gap_ms"),
    "modbus_rtu_tcp": ("frame_gap_ms",),
}


def line_key(dev: ModbusDevice) -> tuple[str, ...] | None:
    """The shared connection a device sits on (None: a connection of its own)."""
    if isinstance(dev, ModbusRtuDevice):
        return ("serial", dev.port)
    if isinstance(dev, ModbusRtuTcpDevice):
        return ("rtu_tcp", dev.host, str(dev.port))
    return None


def line_issues(devices: Sequence[DeviceBase]) -> list[ConfigIssue]:
    """Devices on one line must agree on its settings and have distinct unit ids (located errors)."""
    return shared_line_issues(devices, line_key, _LINE_KEYS, "unit_id", "unit id")


_FIRST_DIGIT = {"1": Table.DISCRETE_INPUT, "3": Table.INPUT_REGISTER, "4": Table.HOLDING_REGISTER}


def notation_warnings(raw_devices: Any) -> list[ConfigIssue]:
    """Integer addresses that read like the vendors' 1-based notation (``address = 30003``).

    In TOML an integer is the 0-based protocol address and only a string (``"30003"``) is notation;
    in a CSV tag list, where every cell is text, ``30003`` is notation.  So that the same digits never
    mean two things silently, ``check`` warns about an integer in 10001..49999 whose first digit names
    the point's table (or no table is given)."""
    issues: list[ConfigIssue] = []
    if not isinstance(raw_devices, list):
        return issues
    for d, dev in enumerate(raw_devices):
        points = dev.get("points") if isinstance(dev, dict) and str(dev.get("type", "")).startswith("modbus") else None
        for p, point in enumerate(points if isinstance(points, list) else []):
            a = point.get("address") if isinstance(point, dict) else None
            if not isinstance(a, int) or isinstance(a, bool) or not 10001 <= a <= 49999:
                continue
            table = _FIRST_DIGIT.get(str(a)[0])
            given = point.get("table")
            if table is None or (given is not None and given != table.value):
                continue
            issues.append(ConfigIssue(
                f"devices[{d}].points[{p}].address",
                f"{a} is read as the 0-based protocol address {a}"
                f"{'' if given else ' of a holding_register'}; in the vendors' 1-based notation (and in a CSV tag"
                f" list) {a} is {table.value} {int(str(a)[1:]) - 1}: write address = \"{a}\" for that",
            ))
    return issues
