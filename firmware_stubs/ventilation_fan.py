"""Main ventilation fan (two-stage contra-rotating axial fan, FBCDZ type), Modbus register map.

Input registers (FC 4), 0-based PDU addresses:

=======  ==============  =======  =====  ===========  ==========================================
address  name            type     order  scale, unit  meaning
=======  ==============  =======  =====  ===========  ==========================================
0-1      seq             uint32   ABCD   -            sample counter (the tick); the oracle's key
2-3      airflow         float32  CDAB   m3/s         main airflow, 150-200 in normal running
4-5      pressure        float32  CDAB   Pa           fan static pressure
6        motor1_current  int16    AB     x0.1 A       stage-1 motor current
7        motor2_current  int16    AB     x0.1 A       stage-2 motor current
8        speed           uint16   AB     rpm          shaft speed (~740)
9-10     vibration       float32  BADC   mm/s         bearing vibration velocity (RMS)
11       bearing_temp    int16    AB     x0.1 degC    drive-end bearing temperature
12-15    energy          uint64   DCBA   kWh          energy meter
=======  ==============  =======  =====  ===========  ==========================================

Holding registers (FC 3):

=======  ==============  =======  =====  ===========  ==========================================
0        state           uint16   AB     enum         0 stopped, 1 running, 2 reversing, 3 fault
1        running         bit 0    -      -            status word bit 0: running
1        standby_ready   bit 1    -      -            status word bit 1: standby fan ready
1        damper_open     bit 2    -      -            status word bit 2: air damper open
2-9      model           string   AB     8 registers  nameplate model, NUL padded
=======  ==============  =======  =====  ===========  ==========================================

Coil 0 ``run_command``; discrete inputs 0 ``door_closed``, 1 ``overload_trip``.

Every tenth minute of ticks (ticks 600-659 of each 3600) the fan reverses (state 2) for a
ventilation drill; the rest of the time it runs.
"""

from __future__ import annotations

import math

from firmware_stubs.register_map import Register, Stub, tick_rng

__all__ = ["VentilationFan"]

_IR, _HR = "input_register", "holding_register"
_STATES = {0: "stopped", 1: "running", 2: "reversing", 3: "fault"}


class VentilationFan(Stub):
    REGISTERS = (
        Register("seq", _IR, 0, "uint32"),
        Register("airflow", _IR, 2, "float32", "CDAB", unit="m3/s"),
        Register("pressure", _IR, 4, "float32", "CDAB", unit="Pa"),
        Register("motor1_current", _IR, 6, "int16", scale=0.1, unit="A"),
        Register("motor2_current", _IR, 7, "int16", scale=0.1, unit="A"),
        Register("speed", _IR, 8, "uint16", unit="rpm"),
        Register("vibration", _IR, 9, "float32", "BADC", unit="mm/s"),
        Register("bearing_temp", _IR, 11, "int16", scale=0.1, unit="degC"),
        Register("energy", _IR, 12, "uint64", "DCBA", unit="kWh"),
        Register("state", _HR, 0, "uint16", enum=_STATES),
        Register("running", _HR, 1, "uint16", bit=0),
        Register("standby_ready", _HR, 1, "uint16", bit=1),
        Register("damper_open", _HR, 1, "uint16", bit=2),
        Register("model", _HR, 2, "string", length=8),
        Register("run_command", "coil", 0, "bool"),
        Register("door_closed", "discrete_input", 0, "bool"),
        Register("overload_trip", "discrete_input", 1, "bool"),
    )

    def raw(self, tick: int) -> dict[str, int | float | str | bool]:
        rng = tick_rng(self.seed, tick)
        reversing = 600 <= tick % 3600 < 660
        phase = tick / 90.0 + self.seed
        flow = (175.0 + 12 * math.sin(phase) + rng.uniform(-1.5, 1.5)) * (-0.6 if reversing else 1.0)
        return {
            "seq": tick & 0xFFFFFFFF,
            "airflow": flow,
            "pressure": 2450.0 + 180 * math.sin(phase / 2) + rng.uniform(-20, 20),
            "motor1_current": 1520 + rng.randint(-30, 30),
            "motor2_current": 1495 + rng.randint(-30, 30),
            "speed": 740 + rng.randint(-3, 3),
            "vibration": 2.2 + 0.6 * math.sin(phase * 3) + rng.uniform(0, 0.3),
            "bearing_temp": 585 + int(40 * math.sin(phase / 4)) + rng.randint(-3, 3),
            "energy": 12_000_000 + tick * 3 + self.seed,
            "state": 2 if reversing else 1,
            "running": True,
            "standby_ready": rng.random() > 0.02,
            "damper_open": True,
            "model": "FBCDZ-8-No.26",
            "run_command": True,
            "door_closed": True,
            "overload_trip": False,
        }
