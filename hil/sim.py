"""``edgegw sim``: one firmware stub served as a standalone simulated PLC (or a line of DL/T 645 meters),
to commission against.

The same :class:`~hil.modbus_server.SimulatedPlc` the tests use, on Modbus TCP, RTU over TCP or RTU on
a serial port, at one unit id; the stub's tick advances every ``tick_s``.  ``device_toml`` prints the
``[[devices]]`` block a commissioning engineer would write for it (the stub's own point list).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from firmware_stubs import gas_substation
from firmware_stubs.belt_conveyor import BeltConveyor
from firmware_stubs.drainage_pump import DrainagePump
from firmware_stubs.energy_meters import EnergyMeter, plant_meters
from firmware_stubs.mine_hoist import MineHoist
from firmware_stubs.ventilation_fan import VentilationFan
from hil.dlt645_server import SimulatedMeters
from hil.modbus_server import SimulatedPlc, StubLike, Transport

__all__ = [
    "METER_SETS", "OPCUA_PLANTS", "S7_PLCS", "STUBS", "device_toml", "meters_toml", "s7_device_toml", "serve",
    "serve_meters", "serve_opcua", "serve_s7",
]

# OPC UA plants (firmware_stubs/opcua_plants.py) on an asyncua server, security None
OPCUA_PLANTS = {
    "coal-gasifier": ("entrained-flow coal gasifier (OPC UA)", "coal_gasifier"),
    "hot-stove": ("blast-furnace hot stove (OPC UA)", "hot_stove"),
    "ree-cell-line": ("rare-earth electrolysis cell line (OPC UA)", "ree_cell_line"),
}

# S7 PLCs (firmware_stubs/s7_hoist.py) on python-snap7's S7 server: name -> what it is
S7_PLCS = {"s7-hoist": "mine hoist on an S7-1500 CPU (S7comm, PUT/GET)"}

# name -> (what it is, make(seed), its point config)
STUBS: dict[str, tuple[str, Callable[[int], StubLike], Callable[[], list[dict[str, object]]]]] = {
    "gas-substation": ("gas monitoring substation", lambda seed: gas_substation.GasSubstation(seed),
                       gas_substation.point_config),
    "ventilation-fan": ("main ventilation fan", VentilationFan, VentilationFan.point_config),
    "belt-conveyor": ("belt conveyor", BeltConveyor, BeltConveyor.point_config),
    "drainage-pump": ("main drainage pump", DrainagePump, DrainagePump.point_config),
    "mine-hoist": ("mine hoist", MineHoist, MineHoist.point_config),
}
TRANSPORTS: dict[str, Transport] = {"tcp": "tcp", "rtu-over-tcp": "rtu_tcp", "rtu": "rtu"}


def device_toml(name: str, transport: str, host: str, port: int, serial_port: str, unit: int) -> str:
    """The ``[[devices]]`` block for the simulated PLC (paste it into a gateway config)."""
    import tomli_w

    device: dict[str, Any] = {"type": {"tcp": "modbus_tcp", "rtu-over-tcp": "modbus_rtu_tcp", "rtu": "modbus_rtu"}[
        transport], "name": f"sim-{name}", "unit_id": unit}
    if transport == "rtu":
        device.update(port=serial_port, baudrate=19200, parity="N")
    else:
        device.update(host=host, port=port)
    device["points"] = STUBS[name][2]()
    return tomli_w.dumps({"devices": [device]})


async def serve(name: str, *, transport: str, host: str, port: int, serial_port: str, unit: int, seed: int,
                tick_s: float, ready: Callable[[SimulatedPlc], None]) -> None:
    """Serve until cancelled; ``ready`` is called once the server listens."""
    stub = STUBS[name][1](seed)
    async with SimulatedPlc(host, port, units={unit: stub}, transport=TRANSPORTS[transport], serial_port=serial_port,
                            tick_s=tick_s) as plc:
        ready(plc)
        await asyncio.Event().wait()


async def serve_opcua(name: str, *, port: int, tick_s: float, ready: Callable[[str], None]) -> None:
    """Serve an OPC UA plant (security None, on 127.0.0.1) until cancelled; ``ready(endpoint)``."""
    from hil.opcua_server import PlantServer

    async with PlantServer([OPCUA_PLANTS[name][1]], port=port, tick_s=tick_s) as srv:
        ready(srv.endpoint)
        await asyncio.Event().wait()


# DL/T 645 meter sets (firmware_stubs/energy_meters.py): one RS-485 line of meters, served over TCP (a serial
# device server in transparent mode) or on a serial port
METER_SETS: dict[str, tuple[str, Callable[[int], list[EnergyMeter]]]] = {
    "energy-meters": ("DL/T 645-2007 three-phase energy meters, 4 on one RS-485 line (coal-chemical substation)",
                      lambda seed: plant_meters(seed=seed, count=4)),
}


def meters_toml(name: str, transport: str, host: str, port: int, serial_port: str, seed: int) -> str:
    """One ``[[devices]]`` block per simulated meter (paste them into a gateway config)."""
    import tomli_w

    devices: list[dict[str, Any]] = []
    for meter in METER_SETS[name][1](seed):
        device: dict[str, Any] = {"type": "dlt645" if transport == "rtu" else "dlt645_tcp",
                                  "name": f"sim-meter-{meter.address}", "address": meter.address}
        if transport == "rtu":
            device.update(port=serial_port, baudrate=2400, parity="N")
        else:
            device.update(host=host, port=port)
        device["points"] = EnergyMeter.point_config()
        devices.append(device)
    return tomli_w.dumps({"devices": devices})


async def serve_meters(name: str, *, transport: str, host: str, port: int, serial_port: str, seed: int,
                       tick_s: float, ready: Callable[[SimulatedMeters], None]) -> None:
    """Serve a meter set until cancelled: TCP (``tcp``, ``rtu-over-tcp``) or a serial port (``rtu``)."""
    meters = METER_SETS[name][1](seed)
    async with SimulatedMeters(meters, transport="serial" if transport == "rtu" else "tcp", host=host, port=port,
                               serial_port=serial_port, tick_s=tick_s) as sim:
        ready(sim)
        await asyncio.Event().wait()


def s7_device_toml(name: str, host: str, port: int) -> str:
    """The ``[[devices]]`` block for the simulated S7 PLC."""
    import tomli_w

    from firmware_stubs.s7_hoist import point_config

    device: dict[str, Any] = {"type": "s7", "name": f"sim-{name}", "host": host, "port": port, "family": "s7-1500",
                              "points": point_config()}
    return tomli_w.dumps({"devices": [device]})


async def serve_s7(name: str, *, host: str, port: int, seed: int, tick_s: float, ready: Callable[[int], None]) -> None:
    """Serve an S7 PLC until cancelled; ``ready(port)`` once it listens."""
    from hil.s7_server import S7Plc

    async with S7Plc(host, port, seed=seed, tick_s=tick_s) as plc:
        ready(plc.port)
        await asyncio.Event().wait()
