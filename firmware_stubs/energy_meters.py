"""Three-phase DL/T 645-2007 energy meters of a plant's energy management: pure data, no sockets.

Each meter has a 12-digit address and a seed; its readings are a function of (seed, tick) only, so
any tick can be replayed and the meters double as the oracle of end-to-end checks.  Energy counters
only increase (a plant's load, never negative); voltages, currents, power and power factor vary
around a plausible working point.  Values are rounded to the resolution the spec's formats carry, so
a value read back from the wire equals the stub's.

=============  =================  ============  ===========================================
DI             name               format        meaning
=============  =================  ============  ===========================================
00 00 00 00    energy_combined    XXXXXX.XX     combined active energy, kWh (forward - reverse)
00 01 00 00    energy_forward     XXXXXX.XX     forward active energy total, kWh
00 01 01 00 .. energy_tariff_1..4 XXXXXX.XX     forward active energy per tariff, kWh
00 02 00 00    energy_reverse     XXXXXX.XX     reverse active energy total, kWh
02 01 01 00 .. voltage_a/b/c      XXX.X         phase voltages, V
02 02 01 00 .. current_a/b/c      XXX.XXX       phase currents, A (signed)
02 03 00 00 .. power / power_a..c XX.XXXX       active power total and per phase, kW (signed)
02 06 00 00 .. pf / pf_a..c       X.XXX         power factor total and per phase (signed)
02 80 00 02    frequency          XX.XX         grid frequency, Hz
=============  =================  ============  ===========================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from firmware_stubs.register_map import tick_rng

__all__ = ["METER_POINTS", "EnergyMeter", "plant_meters"]

# name -> (DI, decimals of its format, unit)
METER_POINTS: dict[str, tuple[int, int, str]] = {
    "energy_combined": (0x00000000, 2, "kWh"),
    "energy_forward": (0x00010000, 2, "kWh"),
    "energy_tariff_1": (0x00010100, 2, "kWh"),
    "energy_tariff_2": (0x00010200, 2, "kWh"),
    "energy_tariff_3": (0x00010300, 2, "kWh"),
    "energy_tariff_4": (0x00010400, 2, "kWh"),
    "energy_reverse": (0x00020000, 2, "kWh"),
    "voltage_a": (0x02010100, 1, "V"),
    "voltage_b": (0x02010200, 1, "V"),
    "voltage_c": (0x02010300, 1, "V"),
    "current_a": (0x02020100, 3, "A"),
    "current_b": (0x02020200, 3, "A"),
    "current_c": (0x02020300, 3, "A"),
    "power": (0x02030000, 4, "kW"),
    "power_a": (0x02030100, 4, "kW"),
    "power_b": (0x02030200, 4, "kW"),
    "power_c": (0x02030300, 4, "kW"),
    "pf": (0x02060000, 3, ""),
    "pf_a": (0x02060100, 3, ""),
    "pf_b": (0x02060200, 3, ""),
    "pf_c": (0x02060300, 3, ""),
    "frequency": (0x02800002, 2, "Hz"),
}


@dataclass
class EnergyMeter:
    """One meter.  ``tick_s`` is the simulated time per tick (energy integrates power over it)."""

    address: str
    seed: int = 1
    tick_s: float = 1.0
    missing: frozenset[int] = field(default_factory=frozenset)  # DIs it answers "no such data"

    def readings(self, tick: int) -> dict[int, float]:
        """DI -> value at ``tick``, rounded to the format's resolution."""
        rng = tick_rng(self.seed, tick)
        base = 30.0 + 20.0 * ((self.seed * 7919) % 13) / 13  # A at full load, per meter
        out: dict[int, float] = {}
        total_p = 0.0
        pfs = []
        for k, phase in enumerate("abc", start=1):
            u = round(220.0 + 4.0 * math.sin(tick / 60 + k) + rng.uniform(-0.5, 0.5), 1)
            i = round(base * (0.8 + 0.15 * math.sin(tick / 300 + k)) + rng.uniform(-0.2, 0.2), 3)
            pf = round(0.9 + 0.05 * math.sin(tick / 120 + 2 * k), 3)
            p = round(u * i * pf / 1000, 4)
            out[0x02010000 | k << 8] = u
            out[0x02020000 | k << 8] = i
            out[0x02030000 | k << 8] = p
            out[0x02060000 | k << 8] = pf
            total_p += p
            pfs.append(pf)
            del phase
        out[0x02030000] = round(total_p, 4)
        out[0x02060000] = round(sum(pfs) / 3, 3)
        out[0x02800002] = round(50.0 + 0.03 * math.sin(tick / 17) + rng.uniform(-0.01, 0.01), 2)
        forward = self.energy_forward(tick)
        reverse = round(12.5 + 0.001 * (tick // 10), 2)
        out[0x00010000] = forward
        out[0x00020000] = reverse
        out[0x00000000] = round(forward - reverse, 2)
        # tariffs split the total: 1 sharp, 2 peak, 3 flat, 4 valley (the last one takes the rounding)
        shares = (0.1, 0.3, 0.35)
        parts = [round(forward * s, 2) for s in shares]
        parts.append(round(forward - sum(parts), 2))
        for t, v in enumerate(parts, start=1):
            out[0x00010000 | t << 8] = v
        return out

    def energy_forward(self, tick: int) -> float:
        """Strictly increasing with the tick: the base reading plus the load's energy since tick 0."""
        start = 10_000.0 + 1000.0 * (self.seed % 50)
        kw = 3 * 220.0 * (30.0 + 20.0 * ((self.seed * 7919) % 13) / 13) * 0.8 * 0.9 / 1000
        return round(start + kw * tick * self.tick_s / 3600 + 0.01 * tick, 2)

    def read(self, di: int, tick: int) -> float | None:
        """The value of one data identifier, or None when this meter does not have it."""
        if di in self.missing:
            return None
        return self.readings(tick).get(di)

    @staticmethod
    def point_config() -> list[dict[str, object]]:
        """The ``[[devices.points]]`` of a meter (data identifiers as engineers write them)."""
        return [
            {"name": name, "di": " ".join(f"{(di >> s) & 0xFF:02X}" for s in (24, 16, 8, 0))}
            for name, (di, _, _) in METER_POINTS.items()
        ]


def plant_meters(seed: int = 1, count: int = 4) -> list[EnergyMeter]:
    """The meters of one RS-485 line of a coal-chemical plant's substation: addresses 2101000000xx."""
    return [EnergyMeter(f"21010000{n:04d}", seed=seed * 100 + n) for n in range(1, count + 1)]
