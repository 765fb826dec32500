"""Config models of the DL/T 645-2007 driver (pure pydantic, no I/O).

One device is one meter (its 12-digit address).  Meters on one RS-485 port (``dlt645``), or behind
one serial device server in transparent TCP mode (``dlt645_tcp``), share the line and are polled in
turn.  A point names a data identifier; its format and unit come from the spec's table
(:mod:`drivers.dlt645.dataids`) unless the point gives them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Self

from drivers.dlt645.codec import ValueFormat, format_address, format_di, parse_address, parse_di
from drivers.dlt645.dataids import lookup
from gateway.core.errors import ConfigIssue
from gateway.core.line import line_issues as shared_line_issues
from gateway.core.models import Field, field_validator, model_validator
from gateway.core.schema import DeviceBase, PointBase

__all__ = [
    "Dlt645Device",
    "Dlt645DeviceBase",
    "Dlt645Point",
    "Dlt645SerialDevice",
    "Dlt645TcpDevice",
    "line_issues",
    "line_key",
]


class Dlt645Point(PointBase):
    di: str = Field(
        description="data identifier DI3 DI2 DI1 DI0 as in the spec's tables, e.g. '02 01 01 00' (phase A voltage)"
    )
    format: str | None = Field(
        default=None, description="BCD format such as 'XXX.XXX' from the meter's manual; default: the spec's table"
    )
    signed: bool | None = Field(
        default=None, description="top bit of the value is its sign; default: the spec's table (else false)"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_table(cls, data: Any) -> Any:
        """Fill the unit from the table when the point gives none (before presets and unit checks)."""
        if isinstance(data, dict) and isinstance(data.get("di"), str) and not data.get("unit"):
            try:
                item = lookup(parse_di(data["di"]))
            except ValueError:
                return data  # reported at `.di` below
            if item is not None and item.unit and "source_unit" not in data:
                data = {**data, "unit": item.unit}
        return data

    @field_validator("di")
    @classmethod
    def _di(cls, v: str) -> str:
        return format_di(parse_di(v))

    @field_validator("format")
    @classmethod
    def _format(cls, v: str | None) -> str | None:
        if v is not None:
            ValueFormat.parse(v)
        return v

    @model_validator(mode="after")
    def _known(self) -> Self:
        if self.format is None and lookup(self.di_value) is None:
            raise ValueError(
                f"data identifier {self.di} is not in the built-in table (energy 00 xx xx xx, instantaneous "
                "values 02 xx xx xx): give its `format` from the meter's manual, e.g. format = 'XXX.XXX'"
            )
        return self

    @property
    def di_value(self) -> int:
        return parse_di(self.di)

    def value_format(self) -> ValueFormat:
        item = lookup(self.di_value)
        if self.format is not None:
            signed = self.signed if self.signed is not None else (item.fmt.signed if item else False)
            return ValueFormat.parse(self.format, signed)
        assert item is not None
        if self.signed is not None:
            return ValueFormat(item.fmt.nbytes, item.fmt.decimals, self.signed)
        return item.fmt


class Dlt645DeviceBase(DeviceBase):
    """One meter: its address, the line discipline, suspension of a silent meter, its points."""

    address: str = Field(description="the meter's 12-digit address as on its nameplate, e.g. '000012345678'")
    preamble_bytes: int = Field(
        default=4, ge=0, le=16, description="0xFE wake-up bytes sent before each request (the spec's usual 4)"
    )
    timeout_ms: int = Field(default=1000, ge=10, le=600_000)
    poll_interval_ms: int = Field(default=5000, ge=10, le=86_400_000)
    retries: int = Field(default=1, ge=0, le=10, description="immediate re-polls after a timeout before 'down'")
    suspend_after_timeouts: int = Field(
        default=2, ge=0, le=100,
        description="polls timed out in a row after which the meter is suspended (tried at a reduced rate; 0: never)",
    )
    suspended_poll_interval_ms: int = Field(
        default=30_000, ge=100, le=3_600_000,
        description="how often a suspended meter is tried: one attempt, in a quiet moment of its line",
    )
    points: list[Dlt645Point] = Field(min_length=1)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return format_address(parse_address(v))

    @property
    def address_bytes(self) -> bytes:
        return parse_address(self.address)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names: set[str] = set()
        dis: dict[str, int] = {}
        for i, p in enumerate(self.points):
            if p.name in names:
                raise ValueError(f"two points are named {p.name!r}")
            names.add(p.name)
            if p.di in dis:
                f = dis[p.di]
                raise ValueError(f"points[{i}] ({p.name!r}) reads data identifier {p.di}, as points[{f}] "
                                 f"({self.points[f].name!r}) does")
            dis[p.di] = i
        return self


class Dlt645SerialDevice(Dlt645DeviceBase):
    """A meter on an RS-485 port: meters on one port share it, one request at a time."""

    type: Literal["dlt645"]
    port: str = Field(min_length=1, description="serial device, e.g. /dev/ttyUSB0 or /dev/ttyS1")
    baudrate: int = Field(default=2400, ge=300, le=115_200, description="DL/T 645-2007 meters default to 2400")
    parity: Literal["N", "E", "O"] = Field(default="E", description="the spec's default is even parity (8E1)")
    stopbits: Literal[1, 2] = 1
    frame_gap_ms: float = Field(default=20.0, ge=0, le=1000, description="silence before each request on the line")


class Dlt645TcpDevice(Dlt645DeviceBase):
    """A meter behind a serial device server (transparent TCP): meters at one host:port share its connection."""

    type: Literal["dlt645_tcp"]
    host: str
    port: int = Field(ge=1, le=65535)
    frame_gap_ms: float = Field(default=20.0, ge=0, le=1000, description="silence before each request on the line")


Dlt645Device = Dlt645SerialDevice | Dlt645TcpDevice

_LINE_KEYS = {"dlt645": ("baudrate", "parity", "stopbits", "frame_gap_ms"), "dlt645_tcp": ("frame_gap_ms",)}


def line_key(dev: Dlt645Device) -> tuple[str, ...]:
    """The line a meter sits on: its serial port, or its serial device server's host:port."""
    if isinstance(dev, Dlt645SerialDevice):
        return ("serial", dev.port)
    return ("tcp", dev.host, str(dev.port))


def line_issues(devices: Sequence[DeviceBase]) -> list[ConfigIssue]:
    """Meters on one line agree on its settings and have distinct addresses (located errors)."""
    return shared_line_issues(devices, line_key, _LINE_KEYS, "address", "meter address")
