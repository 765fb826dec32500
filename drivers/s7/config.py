"""Config models of the Siemens S7 driver (pure pydantic, no I/O).

A device is one CPU reached over ISO-on-TCP (port 102).  ``family`` chooses how the connection is
addressed: rack and slot (S7-300/400/1200/1500, the remote TSAP is derived from them) or the TSAP
pair itself (S7-200 SMART, CPs, anything unusual: ``local_tsap`` / ``remote_tsap``).  A point is an
S7 address as an engineer writes it (``DB10.DBD4``, ``M0.1``, ``IW64``) and an S7 data type.
"""

from __future__ import annotations

import enum
from typing import Any, Literal, Self

from drivers.s7.address import Address, AddressError, Area, Size, parse_address
from gateway.core.models import Field, PrivateAttr, field_validator, model_validator
from gateway.core.schema import DeviceBase, Key, PointBase, check_poll_groups, group_intervals_ms
from gateway.core.values import StringEncoding

__all__ = ["ConnectionType", "DataType", "Family", "S7Device", "S7Point", "parse_tsap"]


class DataType(enum.StrEnum):
    BOOL = "bool"
    BYTE = "byte"
    WORD = "word"
    INT = "int"
    DWORD = "dword"
    DINT = "dint"
    REAL = "real"
    LREAL = "lreal"
    STRING = "string"
    WSTRING = "wstring"
    DATE_AND_TIME = "date_and_time"

    @classmethod
    def _missing_(cls, value: object) -> DataType | None:
        """TIA Portal's spellings (``Real``, ``Date_And_Time``, ``DT``, ``String[20]`` -> STRING)."""
        if isinstance(value, str):
            key = value.strip().lower().split("[", 1)[0].strip()
            return {"dt": cls.DATE_AND_TIME, **{e.value: e for e in cls}}.get(key)
        return None

    def width(self, length: int = 0) -> int:
        """Bytes in the PLC's memory (a BOOL occupies one byte of a read)."""
        if self is DataType.STRING:
            return 2 + length  # max length, actual length, characters
        if self is DataType.WSTRING:
            return 4 + 2 * length  # max and actual length as words, UTF-16 characters
        return _WIDTH[self]


_WIDTH = {
    DataType.BOOL: 1, DataType.BYTE: 1, DataType.WORD: 2, DataType.INT: 2, DataType.DWORD: 4, DataType.DINT: 4,
    DataType.REAL: 4, DataType.LREAL: 8, DataType.DATE_AND_TIME: 8,
}

# which size letter of an address fits which data types; the first is the default data type
_BY_SIZE: dict[Size, tuple[DataType, ...]] = {
    Size.BIT: (DataType.BOOL,),
    Size.BYTE: (DataType.BYTE, DataType.LREAL, DataType.STRING, DataType.WSTRING, DataType.DATE_AND_TIME),
    Size.WORD: (DataType.WORD, DataType.INT),
    Size.DWORD: (DataType.DWORD, DataType.DINT, DataType.REAL),
}
_SIZE_OF = {DataType.BOOL: "X", DataType.BYTE: "B", DataType.WORD: "W", DataType.INT: "W", DataType.DWORD: "D",
            DataType.DINT: "D", DataType.REAL: "D"}


class Family(enum.StrEnum):
    S7_200_SMART = "s7-200-smart"
    S7_300 = "s7-300"
    S7_400 = "s7-400"
    S7_1200 = "s7-1200"
    S7_1500 = "s7-1500"


class ConnectionType(enum.StrEnum):
    """The high byte of the remote TSAP: which of the CPU's connection resources we take."""

    PG = "pg"  # programming device (0x01): takes the connection the engineer's laptop needs
    OP = "op"  # operator panel (0x02)
    BASIC = "basic"  # S7 basic (0x03): from the CPU's free connection resources (the default)

    @property
    def code(self) -> int:
        return {ConnectionType.PG: 1, ConnectionType.OP: 2, ConnectionType.BASIC: 3}[self]


# family -> (rack, slot) of the CPU in a standard rack
_DEFAULT_SLOT = {Family.S7_300: (0, 2), Family.S7_400: (0, 3), Family.S7_1200: (0, 1), Family.S7_1500: (0, 1)}
_SMART_SLOT = 1  # S7-200 SMART: no rack / slot to configure; the CPU answers as rack 0, slot 1


def parse_tsap(v: Any) -> int:
    """``0x0102`` / ``"01.02"`` (STEP 7's notation) / ``"0x0102"`` / ``"0102"`` -> 0x0102."""
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    elif isinstance(v, str):
        text = v.strip().lower()
        try:
            if "." in text:
                hi, lo = text.split(".", 1)
                n = (int(hi, 16) << 8) | int(lo, 16)
            else:
                n = int(text.removeprefix("0x"), 16)
        except ValueError:
            raise ValueError(f"TSAP {v!r} is not hex such as '01.02' or '0x0102'") from None
    else:
        raise ValueError(f"TSAP {v!r} is not hex such as '01.02' or '0x0102'")
    if not 0 <= n <= 0xFFFF:
        raise ValueError(f"TSAP {v!r} is outside 0000..FFFF")
    return n


class S7Point(PointBase):
    address: str = Field(description="S7 address: DB10.DBD4, DB10.DBX2.3, M0.1, MW10, IW64, QX0.0, DB1.DBB20")
    data_type: DataType | None = Field(
        default=None, description="S7 type; default from the address's size letter (X bool, B byte, W word, D dword)"
    )
    length: int | None = Field(
        default=None, ge=1, le=254, description="declared length of a STRING / WSTRING in characters (default 254)"
    )
    string_encoding: StringEncoding | None = Field(
        default=None, description="overrides the device's string_encoding (STRING only; WSTRING is UTF-16)"
    )
    group: Key | None = Field(default=None, description="poll group (a key of the device's poll_groups)")
    _parsed: Address = PrivateAttr()

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, v: Any) -> Any:
        try:
            parse_address(v)
        except AddressError as err:
            raise ValueError(str(err)) from None
        return v.strip() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _fits(self) -> Self:
        a = parse_address(self.address)
        self._parsed = a
        allowed = _BY_SIZE[a.size]
        dt = self.data_type or allowed[0]
        if dt not in allowed:
            if dt in _SIZE_OF:
                want = str(Address(a.area, a.db, a.byte, 0 if dt is DataType.BOOL else None, Size(_SIZE_OF[dt])))
                bits = 1 if a.size is Size.BIT else a.size.width * 8
                needs = "a bit" if dt is DataType.BOOL else f"{dt.width()} bytes"
                raise ValueError(f"address {self.address!r} is a {a.size.name.lower()} ({bits} bit), "
                                 f"but data_type {dt.value!r} needs {needs}: write {want!r}")
            want = str(Address(a.area, a.db, a.byte, None, Size.BYTE))
            raise ValueError(f"{dt.value.upper()} values are addressed by their first byte: write {want!r}, "
                             f"not {self.address!r}")
        if self.length is not None and dt not in (DataType.STRING, DataType.WSTRING):
            raise ValueError("`length` is only for data_type 'string' or 'wstring'")
        if self.string_encoding is not None and dt is not DataType.STRING:
            raise ValueError("`string_encoding` is only for data_type 'string' (a wstring is UTF-16)")
        end = a.byte + dt.width(self.length or 254)
        if end > 65_536:
            raise ValueError(f"a {dt.value} of {dt.width(self.length or 254)} bytes at byte {a.byte} runs past 65535")
        return self

    @property
    def parsed(self) -> Address:
        return self._parsed

    @property
    def type(self) -> DataType:
        """The effective data type (given, or from the address's size letter)."""
        return self.data_type or _BY_SIZE[self._parsed.size][0]

    @property
    def area(self) -> tuple[Area, int]:
        return self._parsed.area, self._parsed.db

    @property
    def span(self) -> tuple[int, int]:
        """[first byte, end) in its area."""
        start = self._parsed.byte
        return start, start + self.type.width(self.length or 254)


class S7Device(DeviceBase):
    """One S7 CPU over ISO-on-TCP (RFC 1006), read with PUT/GET (S7comm "read variable")."""

    type: Literal["s7"]
    host: str
    port: int = Field(default=102, ge=1, le=65535)
    family: Family = Field(description="s7-200-smart, s7-300, s7-400, s7-1200 or s7-1500")
    rack: int | None = Field(default=None, ge=0, le=7, description="default 0")
    slot: int | None = Field(
        default=None, ge=0, le=31, description="CPU slot; default 2 (S7-300), 3 (S7-400), 1 (S7-1200 / 1500)"
    )
    connection_type: ConnectionType = Field(
        default=ConnectionType.BASIC, description="basic (default), op or pg: the CPU's connection resource used"
    )
    local_tsap: int | None = Field(default=None, description="overrides the derived TSAPs, e.g. '01.00'")
    remote_tsap: int | None = Field(default=None, description="e.g. '03.01'; replaces rack / slot")
    pdu_size: int = Field(default=480, ge=240, le=960, description="PDU size to ask for; the CPU may grant less")
    max_items: int = Field(default=20, ge=1, le=40, description="variables per read request (the CPU's limit)")
    max_gap: int = Field(default=32, ge=0, le=512, description="unused bytes one read item may bridge")
    string_encoding: StringEncoding = Field(
        default=StringEncoding.LATIN_1, description="how STRING characters are read: latin-1 (Siemens), gbk, utf-8"
    )
    poll_groups: dict[Key, int] = Field(
        default_factory=dict, description="group name -> poll interval in ms; points name theirs in `group`"
    )
    points: list[S7Point] = Field(min_length=1)

    @field_validator("local_tsap", "remote_tsap", mode="before")
    @classmethod
    def _tsap(cls, v: Any) -> Any:
        return None if v is None else parse_tsap(v)

    @model_validator(mode="after")
    def _addressing(self) -> Self:
        if self.family is Family.S7_200_SMART and (self.rack is not None or self.slot is not None):
            raise ValueError("an S7-200 SMART has no rack / slot: leave them out (or give local_tsap / remote_tsap)")
        if self.remote_tsap is not None and (self.rack is not None or self.slot is not None):
            raise ValueError("give either rack / slot or remote_tsap, not both")
        seen: set[str] = set()
        for p in self.points:
            if p.name in seen:
                raise ValueError(f"two points are named {p.name!r}")
            seen.add(p.name)
        check_poll_groups(self.poll_groups, [p.group for p in self.points])
        return self

    def group_intervals_ms(self) -> dict[str, int]:
        """Every group that has points -> its interval; "" is the device's own poll_interval_ms."""
        return group_intervals_ms(self.poll_groups, [p.group for p in self.points], self.poll_interval_ms)

    def tsaps(self) -> tuple[int, int]:
        """(local TSAP, remote TSAP) of the connection request."""
        if self.family is Family.S7_200_SMART:
            rack, slot = 0, _SMART_SLOT
        else:
            rack_d, slot_d = _DEFAULT_SLOT[self.family]
            rack = rack_d if self.rack is None else self.rack
            slot = slot_d if self.slot is None else self.slot
        local, remote = 0x0100, (self.connection_type.code << 8) | (rack << 5) | slot
        return (self.local_tsap if self.local_tsap is not None else local,
                self.remote_tsap if self.remote_tsap is not None else remote)
