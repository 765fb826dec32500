"""Config models of the Modbus driver (pure pydantic, no I/O)."""

from __future__ import annotations

import enum
from typing import Literal, Self

from pydantic import Field, model_validator

from gateway.schema import DeviceBase, PointBase

__all__ = ["ByteOrder", "DataType", "ModbusPoint", "ModbusTcpDevice", "Table"]


class Table(enum.StrEnum):
    HOLDING_REGISTER = "holding_register"  # function code 3
    INPUT_REGISTER = "input_register"  # function code 4


class DataType(enum.StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def registers(self) -> int:
        return _WIDTH[self]


_WIDTH = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
}


class ByteOrder(enum.StrEnum):
    """Order of the bytes of a multi-register value, named after the big-endian ABCD."""

    ABCD = "ABCD"  # big-endian words, big-endian bytes (Modbus default)
    DCBA = "DCBA"  # fully little-endian
    BADC = "BADC"  # bytes swapped inside each word
    CDAB = "CDAB"  # words swapped ("word swap", common on Schneider / Siemens floats)


class ModbusPoint(PointBase):
    table: Table = Table.HOLDING_REGISTER
    address: int = Field(ge=0, le=65535, description="0-based PDU address (register 40001 is address 0)")
    data_type: DataType = DataType.UINT16
    byte_order: ByteOrder | None = Field(default=None, description="overrides the device's byte_order")

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if self.address + self.data_type.registers > 65536:
            raise ValueError(f"a {self.data_type} at address {self.address} runs past register 65535")
        return self


class ModbusTcpDevice(DeviceBase):
    type: Literal["modbus_tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    byte_order: ByteOrder = ByteOrder.ABCD
    max_gap: int = Field(default=16, ge=0, le=124, description="unused registers a single read may bridge")
    points: list[ModbusPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: set[str] = set()
        for p in self.points:
            if p.name in seen:
                raise ValueError(f"two points are named {p.name!r}")
            seen.add(p.name)
        return self
