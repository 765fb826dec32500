"""Config models of the IEC 60870-5-104 client (pure pydantic, no I/O).

Names follow the standard: ``common_address`` (CA, ASDU address), ``ioa`` (information object
address), type identifications as written in IEC 60870-5-101 (``M_ME_NC_1``), and the session
parameters ``k``, ``w``, ``t0_s`` .. ``t3_s`` with the defaults of IEC 60870-5-104 §9.6.
"""

from __future__ import annotations

import enum
import zoneinfo
from typing import Any, Literal, Self

from drivers.iec104.codec import TypeId
from gateway.core.models import Field, field_validator, model_validator
from gateway.core.schema import DeviceBase, PointBase

__all__ = ["FAMILIES", "ClockSync", "Iec104Device", "Iec104Point", "PointType", "family_of"]


class PointType(enum.StrEnum):
    """The monitored types a point may expect; either form of a pair (without / with time tag) is
    accepted from the station, since stations send the plain one in interrogation responses and the
    time-tagged one spontaneously."""

    M_SP_NA_1 = "M_SP_NA_1"
    M_SP_TB_1 = "M_SP_TB_1"
    M_DP_NA_1 = "M_DP_NA_1"
    M_DP_TB_1 = "M_DP_TB_1"
    M_ME_NA_1 = "M_ME_NA_1"
    M_ME_TD_1 = "M_ME_TD_1"
    M_ME_ND_1 = "M_ME_ND_1"
    M_ME_NB_1 = "M_ME_NB_1"
    M_ME_TE_1 = "M_ME_TE_1"
    M_ME_NC_1 = "M_ME_NC_1"
    M_ME_TF_1 = "M_ME_TF_1"
    M_IT_NA_1 = "M_IT_NA_1"
    M_IT_TB_1 = "M_IT_TB_1"


# family name -> the type ids that carry it
FAMILIES: dict[str, frozenset[int]] = {
    "single": frozenset({TypeId.M_SP_NA_1, TypeId.M_SP_TB_1}),
    "double": frozenset({TypeId.M_DP_NA_1, TypeId.M_DP_TB_1}),
    "normalised": frozenset({TypeId.M_ME_NA_1, TypeId.M_ME_TD_1, TypeId.M_ME_ND_1}),
    "scaled": frozenset({TypeId.M_ME_NB_1, TypeId.M_ME_TE_1}),
    "float": frozenset({TypeId.M_ME_NC_1, TypeId.M_ME_TF_1}),
    "totals": frozenset({TypeId.M_IT_NA_1, TypeId.M_IT_TB_1}),
}


def family_of(t: PointType) -> str:
    tid = TypeId[t.value]
    return next(name for name, ids in FAMILIES.items() if tid in ids)


class ClockSync(enum.StrEnum):
    OFF = "off"  # the default: the station keeps its own time (GPS / IRIG-B in most substations)
    ON_CONNECT = "on_connect"  # C_CS_NA_1 with the gateway's time after each STARTDT


class Iec104Point(PointBase):
    ca: int | None = Field(default=None, ge=1, le=65534, description="common address; default: the device's")
    ioa: int = Field(ge=1, le=16_777_215, description="information object address")
    type_id: PointType = Field(description="expected type, e.g. M_ME_NC_1 (its time-tagged twin is accepted too)")


class Iec104Device(DeviceBase):
    type: Literal["iec104"]
    host: str
    port: int = Field(default=2404, ge=1, le=65535)
    common_address: int = Field(default=1, ge=1, le=65534, description="CA of points that give none")
    originator_address: int = Field(default=0, ge=0, le=255)
    k: int = Field(default=12, ge=1, le=32767, description="max. I-frames sent and not yet acknowledged")
    w: int = Field(default=8, ge=1, le=32767, description="acknowledge at the latest after w received I-frames")
    t0_s: float = Field(default=30.0, gt=0, le=255, description="connection establishment timeout")
    t1_s: float = Field(default=15.0, gt=0, le=255, description="timeout of send or test APDUs")
    t2_s: float = Field(default=10.0, gt=0, le=255, description="acknowledge received I-frames after this")
    t3_s: float = Field(default=20.0, gt=0, le=172_800, description="send TESTFR after this long idle")
    interrogation_period_s: float = Field(
        default=900.0, ge=0, le=86_400, description="general interrogation every so often after the one at start; 0: "
                                                    "only at start"
    )
    counter_interrogation_period_s: float = Field(
        default=900.0, ge=0, le=86_400,
        description="counter interrogation (C_CI_NA_1) every so often, at start too, when integrated totals are "
                    "configured; 0: never (the station sends them spontaneously)",
    )
    clock_sync: ClockSync = ClockSync.OFF
    time_zone: str = Field(default="UTC", description="zone of the station's CP56Time2a time tags, e.g. Asia/Shanghai")
    points: list[Iec104Point] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _connect_bound(cls, data: Any) -> Any:
        """``timeout_ms`` bounds the connect in the gateway's stream runner: for a 104 station that is
        TCP (t0) plus STARTDT confirmation (t1), one second more, unless given."""
        if isinstance(data, dict) and "timeout_ms" not in data:
            t0, t1 = data.get("t0_s", 30.0), data.get("t1_s", 15.0)
            if isinstance(t0, int | float) and isinstance(t1, int | float) and 0 < t0 + t1 <= 510:
                data = {**data, "timeout_ms": int((t0 + t1 + 1) * 1000)}
        return data

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as UTC or Asia/Shanghai)") from None
        return v

    @model_validator(mode="after")
    def _checks(self) -> Self:
        problems = []
        if self.w > self.k:
            problems.append(f"w ({self.w}) must not exceed k ({self.k}); the standard recommends w <= 2/3 k")
        if self.t2_s >= self.t1_s:
            problems.append(f"t2_s ({self.t2_s:g}) must be shorter than t1_s ({self.t1_s:g})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _addresses(self) -> Self:
        names: set[str] = set()
        where: dict[tuple[int, int], str] = {}
        for p in self.points:
            if p.name in names:
                raise ValueError(f"two points are named {p.name!r}")
            names.add(p.name)
            key = (p.ca or self.common_address, p.ioa)
            if key in where:
                raise ValueError(f"points {where[key]!r} and {p.name!r} both have CA {key[0]} IOA {key[1]}")
            where[key] = p.name
        return self

    def address(self, p: Iec104Point) -> tuple[int, int]:
        return p.ca or self.common_address, p.ioa
