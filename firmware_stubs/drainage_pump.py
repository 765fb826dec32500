"""Main drainage pump (multistage centrifugal, MD type) of the central sump, Modbus register map.

Input registers (FC 4), 0-based PDU addresses:

=======  ===============  =======  =====  ===========  ==========================================
address  name             type     order  scale, unit  meaning
=======  ===============  =======  =====  ===========  ==========================================
0-1      seq              uint32   DCBA   -            sample counter (the tick); the oracle's key
2-5      flow             float64  ABCD   m3/h         discharge flow
6        sump_level       uint16   AB     x0.01 m      water level in the sump
7-8      outlet_pressure  float32  CDAB   MPa          discharge pressure
9        motor_current    uint16   AB     x0.1 A       motor current
10-13    total_volume     uint64   DCBA   m3           discharge totaliser
14       motor_temp       int16    BA     x0.1 degC    winding temperature (byte-swapped register)
=======  ===============  =======  =====  ===========  ==========================================

Holding registers (FC 3):

=======  ==============  =======  =====  ===========  ==========================================
0        state           uint16   AB     enum         0 stopped, 1 running, 2 priming, 3 fault
1-2      run_hours       bcd32    CDAB   h            hour meter, packed BCD, words swapped
3        valve_open      bit 1    -      -            status word bit 1: discharge valve open
=======  ==============  =======  =====  ===========  ==========================================

Coil 0 ``start_command``; discrete inputs 0 ``level_high``, 1 ``level_low``.

The sump fills while the pump is stopped and empties while it runs: the pump starts when the
level passes 4.00 m and stops below 1.50 m (a deterministic cycle of 900 ticks).
"""

from __future__ import annotations

from firmware_stubs.register_map import Register, Stub, tick_rng

__all__ = ["DrainagePump"]

_IR, _HR = "input_register", "holding_register"
_STATES = {0: "stopped", 1: "running", 2: "priming", 3: "fault"}


class DrainagePump(Stub):
    REGISTERS = (
        Register("seq", _IR, 0, "uint32", "DCBA"),
        Register("flow", _IR, 2, "float64", unit="m3/h"),
        Register("sump_level", _IR, 6, "uint16", scale=0.01, unit="m"),
        Register("outlet_pressure", _IR, 7, "float32", "CDAB", unit="MPa"),
        Register("motor_current", _IR, 9, "uint16", scale=0.1, unit="A"),
        Register("total_volume", _IR, 10, "uint64", "DCBA", unit="m3"),
        Register("motor_temp", _IR, 14, "int16", "BADC", scale=0.1, unit="degC"),
        Register("state", _HR, 0, "uint16", enum=_STATES),
        Register("run_hours", _HR, 1, "bcd32", "CDAB", unit="h"),
        Register("valve_open", _HR, 3, "uint16", bit=1),
        Register("start_command", "coil", 0, "bool"),
        Register("level_high", "discrete_input", 0, "bool"),
        Register("level_low", "discrete_input", 1, "bool"),
    )

    def raw(self, tick: int) -> dict[str, int | float | str | bool]:
        rng = tick_rng(self.seed, tick)
        t = (tick + 37 * self.seed) % 900
        running = t >= 600  # fill for 600 ticks, pump for 300
        level = 150 + t * 250 // 600 if not running else 400 - (t - 600) * 250 // 300
        flow = 450.0 + rng.uniform(-6, 6) if running else 0.0
        return {
            "seq": tick & 0xFFFFFFFF,
            "flow": flow,
            "sump_level": level,
            "outlet_pressure": (6.4 + rng.uniform(-0.05, 0.05)) if running else 0.0,
            "motor_current": (410 + rng.randint(-8, 8)) if running else 0,
            "total_volume": 8_000_000 + (tick // 900) * 2250 + (max(0, t - 600) * 450 // 3600),
            "motor_temp": (720 if running else 350) + rng.randint(-5, 5),
            "state": 1 if running else 0,
            "run_hours": 23_016 + tick // 3600,
            "valve_open": running,
            "start_command": running,
            "level_high": level >= 400,
            "level_low": level <= 150,
        }
