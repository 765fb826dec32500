"""Main shaft mine hoist (multi-rope friction winder), Modbus register map.

Input registers (FC 4), 0-based PDU addresses:

=======  ==============  =======  =====  ===========  ==========================================
address  name            type     order  scale, unit  meaning
=======  ==============  =======  =====  ===========  ==========================================
0-1      seq             uint32   BADC   -            sample counter (the tick); the oracle's key
2-5      position        float64  CDAB   m            skip depth below the bank (0-620)
6-7      speed           float32  BADC   m/s          rope speed, negative when lowering
8-9      load            int32    DCBA   kg           skip payload
10-11    trips           uint32   ABCD   -            completed winds since commissioning
12       brake_pressure  uint16   AB     x0.01 MPa    brake hydraulic pressure
13       motor_current   int16    AB     x0.1 A       motor current, negative when regenerating
14-15    rope_tension    float32  ABCD   kN           head-rope tension
=======  ==============  =======  =====  ===========  ==========================================

Holding registers (FC 3):

=======  ==============  =======  =====  ===========  ==========================================
0        state           uint16   AB     enum         0 idle, 1 accelerating, 2 full_speed,
                                                      3 decelerating, 4 creeping, 5 emergency_stop
1        overwind        bit 0    -      -            safety word bit 0: overwind
1        overspeed       bit 1    -      -            safety word bit 1: overspeed
1        brake_applied   bit 3    -      -            safety word bit 3: brake applied
2-7      conveyance      string   BA     6 registers  conveyance name, bytes swapped per register
=======  ==============  =======  =====  ===========  ==========================================

Coil 0 ``brake_release``; discrete input 0 ``shaft_gate_closed``.

A wind takes 120 ticks: 10 idle at the loading pocket, 20 accelerating, 30 at 12 m/s, 20
decelerating, 40 creeping the last 20 m; even winds hoist the loaded skip, odd winds lower it empty.
"""

from __future__ import annotations

from firmware_stubs.register_map import Register, Stub, tick_rng

__all__ = ["MineHoist"]

_IR, _HR = "input_register", "holding_register"
_STATES = {0: "idle", 1: "accelerating", 2: "full_speed", 3: "decelerating", 4: "creeping", 5: "emergency_stop"}
_DEPTH = 620.0
_TOP_SPEED = 12.0


def _profile(t: int) -> tuple[int, float, float]:
    """(state, speed, distance travelled) at tick t of a 120-tick wind."""
    if t < 10:
        return 0, 0.0, 0.0
    if t < 30:
        s = t - 10
        return 1, _TOP_SPEED * s / 20, _TOP_SPEED * s * s / 40
    if t < 60:
        return 2, _TOP_SPEED, 120.0 + _TOP_SPEED * (t - 30)
    if t < 80:
        s = t - 60
        return 3, _TOP_SPEED * (1 - s / 20), 480.0 + _TOP_SPEED * s - _TOP_SPEED * s * s / 40
    return 4, 0.5, 600.0 + 0.5 * (t - 80)


class MineHoist(Stub):
    REGISTERS = (
        Register("seq", _IR, 0, "uint32", "BADC"),
        Register("position", _IR, 2, "float64", "CDAB", unit="m"),
        Register("speed", _IR, 6, "float32", "BADC", unit="m/s"),
        Register("load", _IR, 8, "int32", "DCBA", unit="kg"),
        Register("trips", _IR, 10, "uint32"),
        Register("brake_pressure", _IR, 12, "uint16", scale=0.01, unit="MPa"),
        Register("motor_current", _IR, 13, "int16", scale=0.1, unit="A"),
        Register("rope_tension", _IR, 14, "float32", unit="kN"),
        Register("state", _HR, 0, "uint16", enum=_STATES),
        Register("overwind", _HR, 1, "uint16", bit=0),
        Register("overspeed", _HR, 1, "uint16", bit=1),
        Register("brake_applied", _HR, 1, "uint16", bit=3),
        Register("conveyance", _HR, 2, "string", length=6, string_order="BA"),
        Register("brake_release", "coil", 0, "bool"),
        Register("shaft_gate_closed", "discrete_input", 0, "bool"),
    )

    def raw(self, tick: int) -> dict[str, int | float | str | bool]:
        rng = tick_rng(self.seed, tick)
        wind, t = divmod(tick, 120)
        state, speed, travelled = _profile(t)
        hoisting = wind % 2 == 0
        travelled = min(travelled, _DEPTH)
        position = _DEPTH - travelled if hoisting else travelled
        load = 18_000 + rng.randint(-400, 400) if hoisting else 0
        moving = state != 0
        return {
            "seq": tick & 0xFFFFFFFF,
            "position": position,
            "speed": speed if hoisting else -speed,
            "load": load,
            "trips": 250_000 + wind + self.seed,
            "brake_pressure": 650 + rng.randint(-5, 5),
            "motor_current": (int(2100 * speed / _TOP_SPEED) if hoisting else -int(900 * speed / _TOP_SPEED))
            + (rng.randint(-10, 10) if moving else 0),
            "rope_tension": 410.0 + load / 50 + rng.uniform(-2, 2),
            "state": state,
            "overwind": False,
            "overspeed": False,
            "brake_applied": not moving,
            "conveyance": f"skip-{'AB'[self.seed % 2]}",
            "brake_release": moving,
            "shaft_gate_closed": True,
        }
