"""A small, explicit unit table for the conversions commissioning engineers actually configure.

Only what a mine or plant sends: gas concentrations (``%`` by volume <-> ``ppm``), temperatures,
pressures, speeds, dust and electrical magnitudes.  A unit that is not in the table, or a pair of
units that measure different things, is a config error with its location: guessing a conversion
for a safety-relevant reading is worse than refusing to start.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UNITS", "Conversion", "UnitError", "conversion"]


class UnitError(ValueError):
    """Unknown unit, or two units of different dimensions."""


# unit -> (dimension, factor to the dimension's base unit, offset added after the factor)
# base units: concentration "%", temperature "degC", pressure "Pa", speed "m/s", dust "mg/m3",
# voltage "V", current "A", flow "m3/min", length "m", power "kW"
UNITS: dict[str, tuple[str, float, float]] = {
    "%": ("fraction", 1.0, 0.0),
    "%CH4": ("fraction", 1.0, 0.0),
    "%vol": ("fraction", 1.0, 0.0),
    "ppm": ("fraction", 1e-4, 0.0),
    "degC": ("temperature", 1.0, 0.0),
    "℃": ("temperature", 1.0, 0.0),
    "K": ("temperature", 1.0, -273.15),
    "degF": ("temperature", 5 / 9, -32 * 5 / 9),
    "Pa": ("pressure", 1.0, 0.0),
    "hPa": ("pressure", 100.0, 0.0),
    "mbar": ("pressure", 100.0, 0.0),
    "kPa": ("pressure", 1000.0, 0.0),
    "bar": ("pressure", 100_000.0, 0.0),
    "MPa": ("pressure", 1_000_000.0, 0.0),
    "m/s": ("speed", 1.0, 0.0),
    "m/min": ("speed", 1 / 60, 0.0),
    "km/h": ("speed", 1 / 3.6, 0.0),
    "mg/m3": ("dust", 1.0, 0.0),
    "g/m3": ("dust", 1000.0, 0.0),
    "V": ("voltage", 1.0, 0.0),
    "mV": ("voltage", 1e-3, 0.0),
    "kV": ("voltage", 1000.0, 0.0),
    "A": ("current", 1.0, 0.0),
    "mA": ("current", 1e-3, 0.0),
    "kA": ("current", 1000.0, 0.0),
    "m3/min": ("flow", 1.0, 0.0),
    "m3/h": ("flow", 1 / 60, 0.0),
    "m3/s": ("flow", 60.0, 0.0),
    "m": ("length", 1.0, 0.0),
    "mm": ("length", 1e-3, 0.0),
    "cm": ("length", 1e-2, 0.0),
    "kW": ("power", 1.0, 0.0),
    "W": ("power", 1e-3, 0.0),
    "MW": ("power", 1000.0, 0.0),
}


@dataclass(frozen=True, slots=True)
class Conversion:
    """``to = from * factor + offset``."""

    factor: float
    offset: float

    @property
    def identity(self) -> bool:
        return self.factor == 1.0 and self.offset == 0.0

    def __call__(self, value: float) -> float:
        return value * self.factor + self.offset


def conversion(source: str, target: str) -> Conversion:
    """The linear map from ``source`` to ``target``; raise :class:`UnitError` saying why there is none."""
    try:
        sdim, sf, so = UNITS[source]
    except KeyError:
        raise UnitError(f"unknown unit {source!r}; known: {', '.join(UNITS)}") from None
    try:
        tdim, tf, to = UNITS[target]
    except KeyError:
        raise UnitError(f"unknown unit {target!r}; known: {', '.join(UNITS)}") from None
    if sdim != tdim:
        raise UnitError(f"cannot convert {source!r} ({sdim}) to {target!r} ({tdim})")
    # source -> base: v * sf + so; base -> target: (b - to) / tf
    return Conversion(sf / tf, (so - to) / tf)
