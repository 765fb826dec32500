"""Main belt conveyor (DTII(A) type, variable-frequency drive), Modbus register map.

Input registers (FC 4), 0-based PDU addresses:

=======  ============  =======  =====  ===========  ==========================================
address  name          type     order  scale, unit  meaning
=======  ============  =======  =====  ===========  ==========================================
0-1      seq           uint32   CDAB   -            sample counter (the tick); the oracle's key
2-3      belt_speed    float32  ABCD   m/s          belt speed (~3.15 running, 0 stopped)
4-5      load          float32  DCBA   t/h          belt scale throughput
6-7      tension       int32    BADC   N            take-up tension
8        motor_temp    int16    AB     x0.1 degC    drive motor winding temperature
9-12     total         uint64   CDAB   t            belt scale totaliser
13       shift_trips   bcd16    AB     -            trips this shift, packed BCD
=======  ============  =======  =====  ===========  ==========================================

Holding registers (FC 3):

=======  ==============  =======  =====  ===========  ==========================================
0        mode            uint16   AB     enum         0 stopped, 1 running, 2 inspection, 3 locked_out
1        pull_cord       bit 0    -      -            alarm word bit 0: pull-cord switch tripped
1        deviation       bit 1    -      -            alarm word bit 1: belt deviation
1        slip            bit 2    -      -            alarm word bit 2: belt slip
2-3      run_hours       bcd32    ABCD   h            hour meter, packed BCD (8 digits)
=======  ==============  =======  =====  ===========  ==========================================

Discrete inputs 0 ``deviation_left``, 1 ``deviation_right``.

The conveyor stops for inspection during ticks 1800-1859 of every 3600 (speed and load 0).
"""

from __future__ import annotations

import math

from firmware_stubs.register_map import Register, Stub, tick_rng

__all__ = ["BeltConveyor"]

_IR, _HR = "input_register", "holding_register"
_MODES = {0: "stopped", 1: "running", 2: "inspection", 3: "locked_out"}


class BeltConveyor(Stub):
    REGISTERS = (
        Register("seq", _IR, 0, "uint32", "CDAB"),
        Register("belt_speed", _IR, 2, "float32", unit="m/s"),
        Register("load", _IR, 4, "float32", "DCBA", unit="t/h"),
        Register("tension", _IR, 6, "int32", "BADC", unit="N"),
        Register("motor_temp", _IR, 8, "int16", scale=0.1, unit="degC"),
        Register("total", _IR, 9, "uint64", "CDAB", unit="t"),
        Register("shift_trips", _IR, 13, "bcd16"),
        Register("mode", _HR, 0, "uint16", enum=_MODES),
        Register("pull_cord", _HR, 1, "uint16", bit=0),
        Register("deviation", _HR, 1, "uint16", bit=1),
        Register("slip", _HR, 1, "uint16", bit=2),
        Register("run_hours", _HR, 2, "bcd32", unit="h"),
        Register("deviation_left", "discrete_input", 0, "bool"),
        Register("deviation_right", "discrete_input", 1, "bool"),
    )

    def raw(self, tick: int) -> dict[str, int | float | str | bool]:
        rng = tick_rng(self.seed, tick)
        stopped = 1800 <= tick % 3600 < 1860
        phase = tick / 120.0 + self.seed
        load = 0.0 if stopped else max(0.0, 1800 + 600 * math.sin(phase) + rng.uniform(-80, 80))
        left = rng.random() < 0.01
        return {
            "seq": tick & 0xFFFFFFFF,
            "belt_speed": 0.0 if stopped else 3.15 + rng.uniform(-0.02, 0.02),
            "load": load,
            "tension": 48_000 + int(load * 4) + rng.randint(-500, 500),
            "motor_temp": 655 + int(50 * math.sin(phase / 3)) + rng.randint(-4, 4),
            "total": 3_500_000 + tick // 2 + self.seed,
            "shift_trips": (tick // 600) % 10,
            "mode": 2 if stopped else 1,
            "pull_cord": False,
            "deviation": left,
            "slip": False,
            "run_hours": 41_250 + tick // 3600,
            "deviation_left": left,
            "deviation_right": False,
        }
