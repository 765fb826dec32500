"""Three OPC UA plants as pure data + functions: node sets with folders, engineering units, the
transmitters' ranges (EURange; for some also the instrument's limits, InstrumentRange), deterministic
values, and status codes that change (sensor faults, maintenance) on a fixed schedule.

* ``coal_gasifier`` — an entrained-flow coal gasifier of an Ordos coal-to-chemicals plant;
* ``hot_stove`` — a blast-furnace hot stove of a Baotou steel works (cycles on-gas / on-blast);
* ``ree_cell_line`` — a rare-earth (NdPr) molten-salt electrolysis cell line, ``cells`` cells.

A node's value at tick ``t`` is ``spec.value(t)``; its status is ``spec.status(t)`` (a status
name: ``Good``, ``UncertainLastUsableValue``, ``BadSensorFailure``...).  They double as the oracle
in end-to-end tests: what the server serves at tick t is exactly what the gateway must deliver.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PLANTS", "UNITS", "NodeSpec", "coal_gasifier", "hot_stove", "ree_cell_line", "unit_id"]

Scalar = float | int | bool | str

# unit symbol -> (UNECE Recommendation 20 common code, description), for the EUInformation a server
# serves as EngineeringUnits (OPC UA Part 8); "" where Rec 20 has no code (normal cubic metres,
# percent by volume): UnitId -1, "not available"
UNITS: dict[str, tuple[str, str]] = {
    "degC": ("CEL", "degree Celsius"),
    "MPa": ("MPA", "megapascal"),
    "m3/h": ("MQH", "cubic metre per hour"),
    "Nm3/h": ("", "normal cubic metre per hour"),
    "Nm3/min": ("", "normal cubic metre per minute"),
    "%vol": ("", "percent by volume"),
    "kA": ("B22", "kiloampere"),
    "V": ("VLT", "volt"),
}


def unit_id(common_code: str) -> int:
    """EUInformation.UnitId of a Rec 20 common code (Part 8: its ASCII bytes, big-endian); -1 for none."""
    return int.from_bytes(common_code.encode("ascii"), "big") if common_code else -1


@dataclass(frozen=True, slots=True)
class NodeSpec:
    path: tuple[str, ...]  # folders below the plant object, then the variable name
    data_type: str  # Double | Float | Int32 | UInt16 | Boolean | String
    unit: str
    value: Callable[[int], Scalar]
    status: Callable[[int], str] = lambda t: "Good"
    eu_range: tuple[float, float] | None = None  # the transmitter's range (EURange Low, High), if known
    # the instrument's physical limits (InstrumentRange Low, High), wider than the EURange: outside it, a fault
    instrument_range: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def string_id(self) -> str:
        return ".".join(self.path)


def _wave(base: float, amp: float, period: float, phase: float = 0.0) -> Callable[[int], float]:
    return lambda t: round(base + amp * math.sin(2 * math.pi * t / period + phase), 3)


def _every(period: int, offset: int) -> Callable[[int], bool]:
    return lambda t: (t + offset) % period == 0


def _faulty(every: int, length: int, status: str, offset: int = 0) -> Callable[[int], str]:
    """Bad/uncertain for ``length`` ticks out of every ``every``: deterministic fault windows."""
    return lambda t: status if (t + offset) % every < length else "Good"


def coal_gasifier(prefix: str = "Gasifier01") -> list[NodeSpec]:
    g = prefix
    return [
        NodeSpec((g, "Reactor", "Temperature"), "Double", "degC", _wave(1350.0, 25.0, 120), eu_range=(0.0, 1600.0),
                 instrument_range=(0.0, 1800.0)),  # type B thermocouple
        NodeSpec((g, "Reactor", "Pressure"), "Double", "MPa", _wave(4.0, 0.08, 90), eu_range=(0.0, 6.5),
                 instrument_range=(-0.1, 10.0)),
        NodeSpec(
            (g, "Reactor", "WallTemp"),
            "Double",
            "degC",
            _wave(240.0, 5.0, 300),
            _faulty(20, 3, "BadSensorFailure"),
            eu_range=(0.0, 400.0),
        ),
        NodeSpec((g, "Feed", "CoalSlurryFlow"), "Double", "m3/h", _wave(62.0, 1.5, 60), eu_range=(0.0, 100.0)),
        NodeSpec((g, "Feed", "OxygenFlow"), "Double", "Nm3/h", _wave(38000.0, 400.0, 80), eu_range=(0.0, 50000.0)),
        NodeSpec((g, "Syngas", "CO"), "Float", "%vol", _wave(46.0, 1.0, 150), eu_range=(0.0, 100.0)),
        NodeSpec((g, "Syngas", "H2"), "Float", "%vol", _wave(35.0, 0.8, 170), eu_range=(0.0, 100.0)),
        NodeSpec(
            (g, "Syngas", "CO2"),
            "Float",
            "%vol",
            _wave(18.0, 0.6, 110),
            _faulty(15, 2, "UncertainLastUsableValue", 7),
            eu_range=(0.0, 100.0),
        ),
        NodeSpec((g, "Status", "Running"), "Boolean", "", lambda t: t % 50 != 49),
        NodeSpec((g, "Status", "Mode"), "String", "", lambda t: "auto" if t % 50 < 45 else "manual"),
        NodeSpec((g, "Status", "BurnerTrips"), "UInt16", "", lambda t: t // 100),
    ]


def hot_stove(prefix: str = "HotStove2") -> list[NodeSpec]:
    s = prefix

    def on_blast(t: int) -> bool:
        return (t // 30) % 2 == 1  # 30 ticks on gas, 30 on blast

    return [
        NodeSpec(
            (s, "Dome", "Temperature"),
            "Double",
            "degC",
            lambda t: round(1280.0 - (t % 30) * 4.0 if on_blast(t) else 1160.0 + (t % 30) * 4.0, 3),
            eu_range=(0.0, 1600.0),
            instrument_range=(0.0, 1800.0),
        ),
        NodeSpec((s, "Waste", "FlueTemperature"), "Double", "degC", _wave(330.0, 20.0, 60), eu_range=(0.0, 600.0)),
        NodeSpec(
            (s, "Blast", "HotBlastTemperature"),
            "Double",
            "degC",
            _wave(1200.0, 10.0, 60),
            lambda t: "Good" if on_blast(t) else "BadOutOfService",
            eu_range=(0.0, 1400.0),
        ),
        NodeSpec((s, "Blast", "ColdBlastFlow"), "Double", "Nm3/min", _wave(5200.0, 60.0, 45), eu_range=(0.0, 8000.0)),
        NodeSpec((s, "Gas", "BfgFlow"), "Double", "Nm3/h", _wave(98000.0, 1500.0, 75), eu_range=(0.0, 150000.0)),
        NodeSpec(
            (s, "Gas", "CombustionAirFlow"), "Double", "Nm3/h", _wave(76000.0, 1000.0, 75), eu_range=(0.0, 120000.0)
        ),
        NodeSpec((s, "Status", "Phase"), "Int32", "", lambda t: 2 if on_blast(t) else 1),
    ]


def ree_cell_line(prefix: str = "CellLine3", cells: int = 4) -> list[NodeSpec]:
    out: list[NodeSpec] = [
        NodeSpec((prefix, "Rectifier", "LineCurrent"), "Double", "kA", _wave(6.0, 0.05, 40), eu_range=(0.0, 10.0))
    ]
    for c in range(1, cells + 1):
        name = f"Cell{c:02d}"
        out += [
            # no EURange: an anode effect takes a cell's voltage to several times its normal value; the
            # voltmeter's own limits (InstrumentRange) still hold it
            NodeSpec(
                (prefix, name, "Voltage"), "Double", "V", _wave(9.5 + 0.1 * c, 0.3, 30 + c, c),
                instrument_range=(0.0, 60.0),
            ),
            NodeSpec(
                (prefix, name, "BathTemperature"),
                "Double",
                "degC",
                _wave(1050.0, 8.0, 90, c),
                _faulty(40, 4, "BadCommunicationError", 10 * c),
                eu_range=(0.0, 1300.0),
            ),
            NodeSpec((prefix, name, "AnodeEffect"), "Boolean", "", _every(37, c)),
        ]
    return out


PLANTS: dict[str, Callable[[], list[NodeSpec]]] = {
    "coal_gasifier": coal_gasifier,
    "hot_stove": hot_stove,
    "ree_cell_line": ree_cell_line,
}
