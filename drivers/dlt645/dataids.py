"""The data identifiers of DL/T 645-2007 appendix A that a gateway reads: energy and instantaneous values.

Each entry gives what the spec's table gives: a name, the BCD format (``XXXXXX.XX``: 4 bytes, 2
decimals), whether the top bit is a sign, and the unit.  A DI outside this table can still be read:
its point names a ``format`` from the meter's manual.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.dlt645.codec import ValueFormat, format_di

__all__ = ["DataItem", "describe", "lookup"]


@dataclass(frozen=True, slots=True)
class DataItem:
    di: int
    name: str
    fmt: ValueFormat
    unit: str

    def __str__(self) -> str:
        return f"{format_di(self.di)} {self.name} ({self.fmt}{', signed' if self.fmt.signed else ''} {self.unit})"


# energy, DI3 = 00: DI2 = the quantity, DI1 = 00 total or tariff 1..63, DI0 = 00 current or settlement day 1..12
_ENERGY: dict[int, tuple[str, str, bool]] = {
    0x00: ("combined active energy", "kWh", True),  # 组合有功: forward ± reverse as configured, signed
    0x01: ("forward active energy", "kWh", False),
    0x02: ("reverse active energy", "kWh", False),
    0x03: ("combined reactive energy 1", "kvarh", True),
    0x04: ("combined reactive energy 2", "kvarh", True),
    0x05: ("quadrant I reactive energy", "kvarh", False),
    0x06: ("quadrant II reactive energy", "kvarh", False),
    0x07: ("quadrant III reactive energy", "kvarh", False),
    0x08: ("quadrant IV reactive energy", "kvarh", False),
    0x09: ("forward apparent energy", "kVAh", False),
    0x0A: ("reverse apparent energy", "kVAh", False),
}
_ENERGY_FMT = (4, 2)  # XXXXXX.XX

# instantaneous values, DI3 = 02: (DI2, DI1 range) -> name, (bytes, decimals, signed), unit
_PHASES = {0: "total", 1: "phase A", 2: "phase B", 3: "phase C"}
_VARIABLES: dict[int, tuple[str, tuple[int, int, bool], str, tuple[int, ...]]] = {
    0x01: ("voltage", (2, 1, False), "V", (1, 2, 3)),  # XXX.X
    0x02: ("current", (3, 3, True), "A", (1, 2, 3)),  # XXX.XXX, sign in the top bit
    0x03: ("active power", (3, 4, True), "kW", (0, 1, 2, 3)),  # XX.XXXX
    0x04: ("reactive power", (3, 4, True), "kvar", (0, 1, 2, 3)),
    0x05: ("apparent power", (3, 4, True), "kVA", (0, 1, 2, 3)),
    0x06: ("power factor", (2, 3, True), "", (0, 1, 2, 3)),  # X.XXX
    0x07: ("phase angle", (2, 1, False), "°", (1, 2, 3)),  # XXX.X
}
_OTHERS: dict[int, tuple[str, tuple[int, int, bool], str]] = {
    0x02800001: ("neutral current", (3, 3, True), "A"),
    0x02800002: ("grid frequency", (2, 2, False), "Hz"),  # XX.XX
    0x02800003: ("one-minute average active power", (3, 4, True), "kW"),
    0x02800004: ("active demand", (3, 4, True), "kW"),
    0x02800005: ("reactive demand", (3, 4, True), "kvar"),
    0x02800006: ("apparent demand", (3, 4, True), "kVA"),
    0x02800007: ("meter temperature", (2, 1, True), "°C"),
    0x02800008: ("clock battery voltage", (2, 2, False), "V"),
}


def lookup(di: int) -> DataItem | None:
    """The table entry of a data identifier, or None when the table does not know it."""
    d3, d2, d1, d0 = (di >> 24) & 0xFF, (di >> 16) & 0xFF, (di >> 8) & 0xFF, di & 0xFF
    if d3 == 0x00 and d2 in _ENERGY and d1 <= 0x3F and d0 <= 0x0C:
        name, unit, signed = _ENERGY[d2]
        name += ", total" if d1 == 0 else f", tariff {d1}"
        if d0:
            name += f", settlement day {d0} ago"
        return DataItem(di, name, ValueFormat(*_ENERGY_FMT, signed), unit)
    if d3 == 0x02 and d2 in _VARIABLES and d0 == 0x00:
        name, (nbytes, decimals, signed), unit, phases = _VARIABLES[d2]
        if d1 in phases:
            return DataItem(di, f"{name}, {_PHASES[d1]}", ValueFormat(nbytes, decimals, signed), unit)
    other = _OTHERS.get(di)
    if other is not None:
        name, (nbytes, decimals, signed), unit = other
        return DataItem(di, name, ValueFormat(nbytes, decimals, signed), unit)
    return None


def describe() -> list[DataItem]:
    """The common entries (for docs and `edgegw sim`): energy totals, the three-phase values."""
    dis = [0x00000000, 0x00010000, 0x00020000, 0x00030000, 0x00040000]
    for d2, (_, _, _, phases) in _VARIABLES.items():
        dis += [0x02000000 | d2 << 16 | p << 8 for p in phases]
    dis += list(_OTHERS)
    return [item for di in dis if (item := lookup(di)) is not None]
