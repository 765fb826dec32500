"""A 110/10 kV substation of a coal-chemical plant (Ordos), as an IEC 60870-5-104 station's data.

Pure data and functions, no sockets: :mod:`hil.iec104_server` serves it.  Everything is a function
of (seed, tick), so the stub is the oracle of end-to-end checks:

* bus voltages (kV, short float M_ME_NC_1 / M_ME_TF_1), feeder currents (A, scaled M_ME_NB_1 /
  M_ME_TE_1), main transformer oil and winding temperature (normalised M_ME_NA_1 / M_ME_TD_1 with
  full scale 150 °C), frequency (short float);
* breaker positions as double points (M_DP_NA_1 / M_DP_TB_1): the methanol synthesis feeder's breaker
  trips and recloses on a fixed schedule, passing through the intermediate state (DPI 0);
* protection trip and earthing switch as single points (M_SP_NA_1 / M_SP_TB_1);
* energy counters as integrated totals (M_IT_NA_1 / M_IT_TB_1, kWh), which only ever grow.

Interrogation answers use the plain types (no time tag); spontaneous changes use the time-tagged
twins, stamped ``t0_ns + tick * tick_ms``.  ``faults`` sets quality bits on a point (IV, NT, SB, BL,
OV) to exercise the quality mapping.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CA", "POINTS", "Iec104Substation", "StubPoint", "point_config", "tag_list_csv", "wire_value"]

CA = 1


@dataclass(frozen=True, slots=True)
class StubPoint:
    name: str
    ioa: int
    type_id: str  # the plain type (interrogation); spontaneous uses its time-tagged twin
    unit: str = ""
    scale: float = 1.0  # engineering value = wire value * scale (normalised values: full scale)
    description: str = ""


POINTS: tuple[StubPoint, ...] = (
    StubPoint("q1_breaker", 1, "M_DP_NA_1", description="110 kV incoming line breaker (1 off, 2 on)"),
    StubPoint("q11_breaker", 2, "M_DP_NA_1", description="10 kV feeder to gasifier breaker"),
    StubPoint("q12_breaker", 3, "M_DP_NA_1", description="10 kV feeder to methanol synthesis breaker"),
    StubPoint("q13_breaker", 4, "M_DP_NA_1", description="10 kV feeder to air separation breaker"),
    StubPoint("prot_trip", 101, "M_SP_NA_1", description="feeder protection trip signal"),
    StubPoint("earth_switch", 102, "M_SP_NA_1", description="10 kV bus earthing switch closed"),
    StubPoint("u_110kv_bus", 16385, "M_ME_NC_1", "kV", description="110 kV bus voltage"),
    StubPoint("u_10kv_bus1", 16386, "M_ME_NC_1", "kV", description="10 kV bus I voltage"),
    StubPoint("u_10kv_bus2", 16387, "M_ME_NC_1", "kV", description="10 kV bus II voltage"),
    StubPoint("freq", 16388, "M_ME_NC_1", "Hz", description="system frequency"),
    StubPoint("i_gasifier", 16401, "M_ME_NB_1", "A", description="gasifier feeder current"),
    StubPoint("i_methanol", 16402, "M_ME_NB_1", "A", description="methanol synthesis feeder current"),
    StubPoint("i_air_sep", 16403, "M_ME_NB_1", "A", description="air separation feeder current"),
    StubPoint("t1_oil_temp", 16417, "M_ME_NA_1", "degC", 150.0, "main transformer T1 top-oil temperature"),
    StubPoint("t1_winding_temp", 16418, "M_ME_NA_1", "degC", 150.0, "main transformer T1 winding temperature"),
    StubPoint("e_gasifier", 25601, "M_IT_NA_1", "kWh", description="gasifier feeder active energy"),
    StubPoint("e_methanol", 25602, "M_IT_NA_1", "kWh", description="methanol synthesis feeder active energy"),
    StubPoint("e_incoming", 25603, "M_IT_NA_1", "kWh", description="110 kV incoming active energy"),
)
_TIMED = {"M_SP_NA_1": "M_SP_TB_1", "M_DP_NA_1": "M_DP_TB_1", "M_ME_NA_1": "M_ME_TD_1", "M_ME_NB_1": "M_ME_TE_1",
          "M_ME_NC_1": "M_ME_TF_1", "M_IT_NA_1": "M_IT_TB_1"}
_BY_NAME = {p.name: p for p in POINTS}
_F32 = struct.Struct("<f")


def timed_type(type_id: str) -> str:
    return _TIMED[type_id]


def wire_value(p: StubPoint, value: float | int | bool) -> float | int | bool:
    """The value as the client decodes it (before scale): float32, normalised in 1/32768 steps."""
    if p.type_id == "M_ME_NC_1":
        return float(_F32.unpack(_F32.pack(float(value)))[0])
    if p.type_id == "M_ME_NA_1":
        return max(-32768, min(32767, round(float(value) * 32768))) / 32768
    return value


def _tri(tick: int, period: int) -> int:
    """A triangle wave 0..period..0: deterministic, no float drift."""
    phase = tick % (2 * period)
    return phase if phase <= period else 2 * period - phase


@dataclass
class Iec104Substation:
    seed: int = 1
    t0_ns: int = 0
    tick_ms: int = 1000
    tick: int = 0
    faults: dict[str, int] = field(default_factory=dict)  # point name -> quality flag bits

    def values(self, tick: int | None = None) -> dict[str, float | int | bool]:
        """Every point's raw value (what goes on the wire before encoding) at a tick."""
        t = self.tick if tick is None else tick
        s = self.seed % 7
        trip_cycle = t % 20  # the methanol feeder trips at 12, opens (13..15), recloses at 16
        q12 = 2 if trip_cycle < 12 else 0 if trip_cycle in (12, 16) else 1
        i_methanol = 0 if q12 != 2 else 310 + _tri(t + s, 9) * 4
        return {
            "q1_breaker": 2,
            "q11_breaker": 2,
            "q12_breaker": q12,
            "q13_breaker": 2 if (t // 30) % 2 == 0 else 1,
            "prot_trip": trip_cycle in (12, 13),
            "earth_switch": False,
            "u_110kv_bus": 112.0 + _tri(t + s, 10) * 0.125,
            "u_10kv_bus1": 10.25 + _tri(t, 8) * 0.0625,
            "u_10kv_bus2": 10.5 - _tri(t + 3, 8) * 0.0625,
            "freq": 50.0 + (_tri(t, 5) - 2) * 0.01,
            "i_gasifier": 420 + _tri(t + s, 12) * 3,
            "i_methanol": i_methanol,
            "i_air_sep": 260 + _tri(t, 7) * 2,
            "t1_oil_temp": (55.0 + _tri(t // 2, 15) * 0.5) / 150.0,
            "t1_winding_temp": (68.0 + _tri(t // 2, 15) * 0.75) / 150.0,
            "e_gasifier": 1_000_000 + s * 1000 + t * 117,
            "e_methanol": 800_000 + 88 * t - _energy_lost(t),
            "e_incoming": 5_000_000 + t * 402,
        }

    def wire_reading(self, tick: int | None = None) -> dict[str, float | int | bool]:
        """The values as the driver hands them over (wire rounding, before the point's scale)."""
        return {name: wire_value(_BY_NAME[name], v) for name, v in self.values(tick).items()}

    def reading(self, tick: int | None = None) -> dict[str, float | int | bool]:
        """The engineering values the gateway must show at a tick (wire rounding and scale applied)."""
        out: dict[str, float | int | bool] = {}
        for name, v in self.values(tick).items():
            p = _BY_NAME[name]
            w = wire_value(p, v)
            out[name] = w * p.scale if p.scale != 1.0 else w
        return out

    def time_ns(self, tick: int | None = None) -> int:
        t = self.tick if tick is None else tick
        return self.t0_ns + t * self.tick_ms * 1_000_000

    def advance(self) -> list[str]:
        """Next tick; the names of the points whose value changed (reported spontaneously)."""
        before = self.values()
        self.tick += 1
        after = self.values()
        return [n for n in after if after[n] != before[n]]


def _energy_lost(t: int) -> int:
    """Energy the methanol feeder did not draw while its breaker was open (ticks 12..16 of each 20)."""
    full, part = divmod(t, 20)
    return 88 * (full * 8 + max(0, part - 12))


def point_config(ca: int = CA) -> list[dict[str, Any]]:
    """The ``[[devices.points]]`` of the gateway for this station."""
    out: list[dict[str, Any]] = []
    for p in POINTS:
        d: dict[str, Any] = {"name": p.name, "ioa": p.ioa, "type_id": p.type_id}
        if ca != 1:
            d["ca"] = ca
        if p.unit:
            d["unit"] = p.unit
        if p.scale != 1.0:
            d["scale"] = p.scale
        if p.description:
            d["description"] = p.description
        out.append(d)
    return out


def tag_list_csv(ca: int = CA) -> str:
    """The station's point list as the CSV `edgegw import-tags iec104` reads."""
    rows = ["name,ca,ioa,type,unit,scale"]
    rows += [f"{p.name},{ca},{p.ioa},{p.type_id},{p.unit},{p.scale:g}" for p in POINTS]
    return "\n".join(rows) + "\n"
