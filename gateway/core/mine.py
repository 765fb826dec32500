"""Coal-mine safety preset: point classes with default units, ranges and alarm thresholds.

``class = "ch4"`` on a point fills in what the mine standards fix, unless the point says otherwise:
unit, measuring range (``min``/``max``) and the ``alarm`` thresholds.  Sources (see the project's
identifier reference, section 4.3): 《煤矿安全规程》 and AQ 1029-2019 for CH4 alarm / power-off /
restore levels per sensor location; the 2011 《煤矿安全规程》 gas limits for CO (24 ppm), CO2
(0.5 %) and O2 (>= 20 % in working-face intake air); dust, temperature and wind-speed limits are
the commonly quoted values and are marked unverified there: a mine sets them per point.

Thresholds depend on where a sensor hangs, so CH4 takes ``alarm.location`` (T0, T1, T2, T3, T7,
shearer, heading_T1, heading_T2) to pick the row of the standard's table.  The gateway only
reports: the KJ safety monitoring system stays authoritative and is never written to.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["CH4_LOCATIONS", "PRESETS", "PointClass", "Preset", "apply_preset"]


class PointClass(enum.StrEnum):
    CH4 = "ch4"
    CO = "co"
    O2 = "o2"
    CO2 = "co2"
    WIND_SPEED = "wind_speed"
    TEMPERATURE = "temperature"
    DUST = "dust"
    NEGATIVE_PRESSURE = "negative_pressure"
    SWITCH = "switch"


@dataclass(frozen=True, slots=True)
class Preset:
    unit: str
    min: float | None
    max: float | None
    alarm: dict[str, Any]


# CH4 alarm / power-off / restore by sensor location (《煤矿安全规程》, AQ 1029-2019)
CH4_LOCATIONS: dict[str, dict[str, float]] = {
    "T0": {"high": 1.0, "power_off": 1.5, "restore": 1.5},  # working face upper corner
    "T1": {"high": 1.0, "power_off": 1.5, "restore": 1.0},  # working face
    "T2": {"high": 1.0, "power_off": 1.0, "restore": 1.0},  # return airway
    "T3": {"high": 0.5, "power_off": 0.5, "restore": 0.5},  # intake airway, high-gas / outburst mines
    "T7": {"high": 2.5, "power_off": 2.5, "restore": 2.5},  # dedicated gas-exhaust roadway
    "shearer": {"high": 1.0, "power_off": 1.5, "restore": 1.0},  # machine-mounted
    "heading_T1": {"high": 1.0, "power_off": 1.5, "restore": 1.0},
    "heading_T2": {"high": 1.0, "power_off": 1.0, "restore": 1.0},
}

PRESETS: dict[PointClass, Preset] = {
    PointClass.CH4: Preset("%CH4", 0.0, 100.0, {**CH4_LOCATIONS["T1"], "hysteresis": 0.05}),
    PointClass.CO: Preset("ppm", 0.0, 1000.0, {"high": 24.0, "hysteresis": 2.0}),
    PointClass.O2: Preset("%", 0.0, 25.0, {"low": 20.0, "hysteresis": 0.2}),
    PointClass.CO2: Preset("%", 0.0, 5.0, {"high": 0.5, "hysteresis": 0.05}),
    PointClass.WIND_SPEED: Preset("m/s", 0.0, 15.0, {"low": 0.25, "high": 4.0, "hysteresis": 0.05}),
    PointClass.TEMPERATURE: Preset("degC", -20.0, 60.0, {"high": 26.0, "hysteresis": 0.5}),
    PointClass.DUST: Preset("mg/m3", 0.0, 1000.0, {"high": 10.0, "hysteresis": 0.5}),
    PointClass.NEGATIVE_PRESSURE: Preset("kPa", 0.0, 10.0, {}),
    PointClass.SWITCH: Preset("", None, None, {}),
}


def apply_preset(data: dict[str, Any]) -> dict[str, Any]:
    """Fill a point's config dict from its class; explicit keys always win.

    Runs before validation, so every later check (thresholds inside the range, units known) sees
    the effective values and reports them at the point's location.
    """
    name = data.get("class")
    if name is None:
        return data
    try:
        preset = PRESETS[PointClass(name)]
    except ValueError:
        return data  # the enum validation of `class` reports it
    out = dict(data)
    out.setdefault("unit", preset.unit)
    out.setdefault("min", preset.min)
    out.setdefault("max", preset.max)
    alarm = out.get("alarm")
    if alarm is False:  # `alarm = false`: the class without its alarm thresholds
        out.pop("alarm")
    elif isinstance(alarm, dict):
        location = alarm.get("location")
        base = dict(preset.alarm)
        if location in CH4_LOCATIONS:
            base.update(CH4_LOCATIONS[location])
        out["alarm"] = {**base, **alarm}
    elif alarm is None and preset.alarm:
        out["alarm"] = dict(preset.alarm)
    return out
