"""Main shaft mine hoist on a Siemens S7 CPU: the same winder as :mod:`firmware_stubs.mine_hoist`, laid
out in S7 memory as a TIA Portal project would (standard-access DB, bit memory, process image).

DB10 ``HoistData`` (standard access, 84 bytes):

=========  ==================  ==============  ======  ==============================================
address    name                type            unit    meaning
=========  ==================  ==============  ======  ==============================================
DBD0       seq                 DWORD                   sample counter (the tick); the oracle's key
DBD4       rope_speed          REAL            m/s     rope speed, negative when lowering
DBB8       hoist_position      LREAL           m       skip depth below the bank (0-620)
DBD16      load                DINT            kg      skip payload
DBW20      motor_current       INT             x0.1 A  motor current, negative when regenerating
DBW22      brake_pressure      WORD            x0.01   brake hydraulic pressure, MPa
DBD24      rope_tension        REAL            kN      head-rope tension
DBD28      trips               DWORD                   completed winds since commissioning
DBX32.0    overwind            BOOL                    safety: overwind
DBX32.1    overspeed           BOOL                    safety: overspeed
DBX32.3    brake_applied       BOOL                    brake applied
DBX32.4    running             BOOL                    the winder is moving
DBB33      state               BYTE                    0 idle .. 4 creeping, 5 emergency_stop
DBB34      conveyance          STRING[16]              conveyance name
DBB52      wind_started        DATE_AND_TIME           when the current wind started (PLC local time)
DBB60      hoist_name          WSTRING[10]             the winder's name in Chinese
=========  ==================  ==============  ======  ==============================================

Bit memory: ``M0.0`` brake_release, ``MW10`` heartbeat (WORD, tick mod 65536).  Inputs: ``I0.1``
shaft_gate_closed, ``IW64`` brake pressure as a raw analog input (0..27648 = 0..10 MPa).  Outputs:
``Q0.0`` brake_valve, ``Q0.1`` hoist_run.

Pure data and functions (no sockets): :func:`memory` gives each area's bytes at a tick, the values
the driver must read back are :func:`expected`, and ``hil/s7_server.py`` serves the bytes.
"""

from __future__ import annotations

import datetime as dt
import struct

from firmware_stubs.mine_hoist import MineHoist

__all__ = ["DB_NUMBER", "DB_SIZE", "HOIST_NAME", "S7Hoist", "point_config"]

DB_NUMBER = 10
DB_SIZE = 84
M_SIZE = 16
IO_SIZE = 80  # I and Q images: IW64 is the last analog input used
HOIST_NAME = "主井提升机"  # main shaft hoist
_EPOCH = dt.datetime(2026, 1, 1, 6, 0, 0)
# area, DB -> bytes: ("DB", 10), ("M", 0), ("I", 0), ("Q", 0)
Memory = dict[tuple[str, int], bytes]


def point_config() -> list[dict[str, object]]:
    """The ``[[devices.points]]`` a commissioning engineer writes for this PLC."""
    db = f"DB{DB_NUMBER}"
    return [
        {"name": "seq", "address": f"{db}.DBD0"},
        {"name": "rope_speed", "address": f"{db}.DBD4", "data_type": "real", "unit": "m/s"},
        {"name": "hoist_position", "address": f"{db}.DBB8", "data_type": "lreal", "unit": "m"},
        {"name": "load", "address": f"{db}.DBD16", "data_type": "dint", "unit": "kg"},
        {"name": "motor_current", "address": f"{db}.DBW20", "data_type": "int", "scale": 0.1, "unit": "A"},
        {"name": "brake_pressure", "address": f"{db}.DBW22", "scale": 0.01, "unit": "MPa"},
        {"name": "rope_tension", "address": f"{db}.DBD24", "data_type": "real", "unit": "kN"},
        {"name": "trips", "address": f"{db}.DBD28"},
        {"name": "overwind", "address": f"{db}.DBX32.0"},
        {"name": "overspeed", "address": f"{db}.DBX32.1"},
        {"name": "brake_applied", "address": f"{db}.DBX32.3"},
        {"name": "running", "address": f"{db}.DBX32.4"},
        {"name": "state", "address": f"{db}.DBB33"},
        {"name": "conveyance", "address": f"{db}.DBB34", "data_type": "string", "length": 16},
        {"name": "wind_started", "address": f"{db}.DBB52", "data_type": "date_and_time"},
        {"name": "hoist_name", "address": f"{db}.DBB60", "data_type": "wstring", "length": 10},
        {"name": "brake_release", "address": "M0.0"},
        {"name": "heartbeat", "address": "MW10"},
        {"name": "shaft_gate_closed", "address": "I0.1"},
        {"name": "brake_pressure_ai", "address": "IW64", "data_type": "int",
         "scaling": {"raw_low": 0, "raw_high": 27648, "eng_low": 0, "eng_high": 10}, "unit": "MPa"},
        {"name": "brake_valve", "address": "Q0.0"},
        {"name": "hoist_run", "address": "Q0.1"},
    ]


class S7Hoist:
    """The hoist's S7 memory, deterministic from ``seed`` and the tick."""

    def __init__(self, seed: int = 1) -> None:
        self.seed = seed
        self._hoist = MineHoist(seed)

    def expected(self, tick: int) -> dict[str, int | float | str | bool]:
        """The raw values (before scaling) each point of :func:`point_config` reads at ``tick``."""
        r = self._hoist.raw(tick)
        wind = tick // 120
        started = _EPOCH + dt.timedelta(seconds=120 * wind)
        speed = struct.unpack(">f", struct.pack(">f", float(r["speed"])))[0]  # as a REAL holds it
        tension = struct.unpack(">f", struct.pack(">f", float(r["rope_tension"])))[0]
        return {
            "seq": int(r["seq"]),
            "rope_speed": speed,
            "hoist_position": float(r["position"]),
            "load": int(r["load"]),
            "motor_current": int(r["motor_current"]),
            "brake_pressure": int(r["brake_pressure"]),
            "rope_tension": tension,
            "trips": int(r["trips"]),
            "overwind": bool(r["overwind"]),
            "overspeed": bool(r["overspeed"]),
            "brake_applied": bool(r["brake_applied"]),
            "running": not bool(r["brake_applied"]),
            "state": int(r["state"]),
            "conveyance": str(r["conveyance"]),
            "wind_started": started.isoformat(timespec="milliseconds"),
            "hoist_name": HOIST_NAME,
            "brake_release": bool(r["brake_release"]),
            "heartbeat": tick & 0xFFFF,
            "shaft_gate_closed": bool(r["shaft_gate_closed"]),
            "brake_pressure_ai": int(r["brake_pressure"]) * 27648 // 1000,
            "brake_valve": bool(r["brake_release"]),
            "hoist_run": not bool(r["brake_applied"]),
        }

    def memory(self, tick: int) -> Memory:
        e = self.expected(tick)
        db = bytearray(DB_SIZE)
        struct.pack_into(">IfdihHfI", db, 0, e["seq"], e["rope_speed"], e["hoist_position"], e["load"],
                         e["motor_current"], e["brake_pressure"], e["rope_tension"], e["trips"])
        db[32] = sum(int(bool(e[name])) << bit for name, bit in
                     (("overwind", 0), ("overspeed", 1), ("brake_applied", 3), ("running", 4)))
        db[33] = int(e["state"])
        db[34:52] = _encode_string(str(e["conveyance"]), 16)
        started = dt.datetime.fromisoformat(str(e["wind_started"]))
        db[52:60] = _encode_date_and_time(started.year, started.month, started.day, started.hour, started.minute,
                                         started.second, started.microsecond // 1000)
        db[60:84] = _encode_wstring(HOIST_NAME, 10)
        m = bytearray(M_SIZE)
        m[0] = int(bool(e["brake_release"]))
        struct.pack_into(">H", m, 10, e["heartbeat"])
        i = bytearray(IO_SIZE)
        i[0] = int(bool(e["shaft_gate_closed"])) << 1
        struct.pack_into(">h", i, 64, e["brake_pressure_ai"])
        q = bytearray(IO_SIZE)
        q[0] = int(bool(e["brake_valve"])) | int(bool(e["hoist_run"])) << 1
        return {("DB", DB_NUMBER): bytes(db), ("M", 0): bytes(m), ("I", 0): bytes(i), ("Q", 0): bytes(q)}


# S7 memory layouts, written here independently of drivers/s7/codec.py (the stub is the oracle)


def _encode_string(text: str, length: int = 254, encoding: str = "latin-1") -> bytes:
    data = text.encode(encoding)[:length]
    return bytes((length, len(data))) + data + bytes(length - len(data))


def _encode_wstring(text: str, length: int = 254) -> bytes:
    data = text.encode("utf-16-be")[: 2 * length]
    n = len(data) // 2
    return struct.pack(">HH", length, n) + data + bytes(2 * (length - n))


def _encode_date_and_time(year: int, month: int, day: int, hour: int, minute: int, second: int, ms: int = 0) -> bytes:
    def bcd(n: int) -> int:
        return (n // 10) << 4 | n % 10

    weekday = dt.date(year, month, day).isoweekday() % 7 + 1  # 1 = Sunday
    return bytes((bcd(year % 100), bcd(month), bcd(day), bcd(hour), bcd(minute), bcd(second), bcd(ms // 10),
                  (ms % 10) << 4 | weekday))
