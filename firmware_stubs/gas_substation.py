"""Coal-mine gas monitoring substation (KJ safety-monitoring outstation), Modbus register map.

Input registers (FC 4), 0-based PDU addresses, big-endian words (ABCD):

=======  =========  ===========  =======  =============================================
address  name       type         unit     meaning
=======  =========  ===========  =======  =============================================
0-1      seq        uint32       -        sample counter (the tick); the oracle's key
2-3      ch4        float32      %        methane by volume, working face T1
4        co         uint16       ppm      carbon monoxide
5        o2         uint16 x0.01 %        oxygen (2090 = 20.90 %)
6        wind       uint16 x0.01 m/s      wind speed in the roadway
7        temp       int16 x0.1   degC     air temperature (may be negative)
=======  =========  ===========  =======  =============================================

Holding registers (FC 3):

=======  ==========  ===========  ======  ===========================================
0        status      uint16       -       bit 0 sensor fault, bit 1 CH4 alarm, bit 2 power-off
1        ch4_alarm   uint16 x0.01 %       configured CH4 alarm threshold (100 = 1.00 %)
=======  ==========  ===========  ======  ===========================================

Values follow slow sine waves plus seeded noise, within the ranges a real face sees.

Fault modes, deterministic: ``ch4_override`` maps ticks to CH4 readings that replace the normal
wave, e.g. :func:`ch4_excursion` (a gas outburst that crosses the 1.0 % alarm and the 1.5 %
power-off level and falls back), or ``nan`` (a failed sensor sending an IEEE NaN; status bit 0).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from firmware_stubs.register_map import Image, tick_rng

__all__ = [
    "HOLDING_REGISTERS",
    "INPUT_REGISTERS",
    "GasSubstation",
    "Reading",
    "ch4_excursion",
    "expected_values",
    "point_config",
]

INPUT_REGISTERS = 8
HOLDING_REGISTERS = 2
CH4_ALARM_PCT = 1.0
CH4_POWER_OFF_PCT = 1.5


@dataclass(frozen=True, slots=True)
class Reading:
    """Engineering values of one tick, exactly as the gateway must deliver them."""

    seq: int
    ch4: float  # float32-rounded, %
    co: int  # ppm
    o2: float  # %
    wind: float  # m/s
    temp: float  # degC
    status: int
    ch4_alarm: float


def ch4_excursion(start: int, levels: tuple[float, ...] = (0.8, 1.2, 1.6, 1.2, 0.9, 0.4)) -> dict[int, float]:
    """A CH4 excursion from tick ``start`` on, one level per tick (default: up through the 1.0 %
    alarm and the 1.5 % power-off level, back below both)."""
    return {start + i: level for i, level in enumerate(levels)}


class GasSubstation:
    def __init__(self, seed: int = 1, ch4_override: Mapping[int, float] | None = None) -> None:
        self.seed = seed
        self.ch4_override = dict(ch4_override or {})

    def reading(self, tick: int) -> Reading:
        rng = tick_rng(self.seed, tick)
        phase = tick / 60.0
        ch4 = 0.35 + 0.25 * math.sin(phase + self.seed) + rng.uniform(-0.05, 0.05)
        ch4 = max(0.0, ch4)
        ch4 = self.ch4_override.get(tick, ch4)
        ch4_f32 = struct.unpack(">f", struct.pack(">f", ch4))[0]
        co = max(0, int(6 + 4 * math.sin(phase / 2 + self.seed) + rng.randint(-1, 1)))
        o2_raw = 2090 + int(8 * math.sin(phase / 3)) + rng.randint(-3, 3)
        wind_raw = max(0, 180 + int(40 * math.sin(phase / 5 + 1)) + rng.randint(-5, 5))
        temp_raw = 215 + int(30 * math.sin(phase / 7 + 2)) + rng.randint(-2, 2)
        fault = 1 if math.isnan(ch4_f32) else 0
        status = fault | (2 if ch4_f32 >= CH4_ALARM_PCT else 0) | (4 if ch4_f32 >= CH4_POWER_OFF_PCT else 0)
        return Reading(
            seq=tick,
            ch4=ch4_f32,
            co=co,
            o2=o2_raw / 100,
            wind=wind_raw / 100,
            temp=temp_raw / 10,
            status=status,
            ch4_alarm=round(CH4_ALARM_PCT * 100) / 100,
        )

    def input_registers(self, tick: int) -> list[int]:
        r = self.reading(tick)
        words = struct.pack(
            ">IfHHHh",
            tick & 0xFFFFFFFF,
            r.ch4,
            r.co,
            round(r.o2 * 100),
            round(r.wind * 100),
            round(r.temp * 10),
        )
        return list(struct.unpack(f">{INPUT_REGISTERS}H", words))

    def holding_registers(self, tick: int) -> list[int]:
        r = self.reading(tick)
        return [r.status, round(r.ch4_alarm * 100)]

    def image(self, tick: int) -> Image:
        return Image(holding_registers=self.holding_registers(tick), input_registers=self.input_registers(tick))


def point_config() -> list[dict[str, object]]:
    """The Modbus point list a commissioning engineer writes for this substation (config dicts)."""
    return [
        {"name": "seq", "table": "input_register", "address": 0, "data_type": "uint32"},
        {"name": "ch4", "table": "input_register", "address": 2, "data_type": "float32", "unit": "%CH4",
         "min": 0.0, "max": 100.0},
        {"name": "co", "table": "input_register", "address": 4, "data_type": "uint16", "unit": "ppm"},
        {"name": "o2", "table": "input_register", "address": 5, "data_type": "uint16", "scale": 0.01, "unit": "%"},
        {"name": "wind", "table": "input_register", "address": 6, "data_type": "uint16", "scale": 0.01,
         "unit": "m/s"},
        {"name": "temp", "table": "input_register", "address": 7, "data_type": "int16", "scale": 0.1,
         "unit": "degC"},
        {"name": "status", "table": "holding_register", "address": 0, "data_type": "uint16"},
        {"name": "ch4_alarm", "table": "holding_register", "address": 1, "data_type": "uint16", "scale": 0.01,
         "unit": "%CH4"},
    ]


def expected_values(reading: Reading) -> dict[str, float | int]:
    """Point name -> the exact value the gateway must deliver for this reading."""
    return {
        "seq": reading.seq,
        "ch4": reading.ch4,
        "co": reading.co,
        "o2": reading.o2,
        "wind": reading.wind,
        "temp": reading.temp,
        "status": reading.status,
        "ch4_alarm": reading.ch4_alarm,
    }
