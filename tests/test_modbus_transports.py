"""Modbus TCP, RTU over TCP and RTU on a serial line (socat pty pair) against real pymodbus servers
serving the firmware stubs; several unit ids sharing one line; a dead unit id on a shared line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.modbus.driver import Line, LinePool, ModbusDriver
from firmware_stubs.belt_conveyor import BeltConveyor
from firmware_stubs.drainage_pump import DrainagePump
from firmware_stubs.mine_hoist import MineHoist
from firmware_stubs.register_map import Stub
from firmware_stubs.ventilation_fan import VentilationFan
from gateway.catalog import Catalog, build_catalog
from gateway.config import Config, parse
from gateway.core.point import Quality, SampleBatch
from gateway.runner import DeviceRunner
from hil.modbus_server import SimulatedPlc
from hil.services import PtyPair
from pipelines.normalise import Normalise
from tests.conftest import eventually, stop_tasks

STUBS: list[type[Stub]] = [VentilationFan, BeltConveyor, DrainagePump, MineHoist]
GATEWAY = {"id": "gw1", "site": "baotou-mine-01", "enterprise_prefix": "88.608.5288"}


def _config(devices: list[dict[str, Any]]) -> Config:
    return parse({"gateway": GATEWAY, "devices": devices})


def _device(kind: str, name: str, unit: int, stub: type[Stub], **where: Any) -> dict[str, Any]:
    return {"type": kind, "name": name, "unit_id": unit, "points": stub.point_config(), "timeout_ms": 1000, **where}


def _values(catalog: Catalog, batch: SampleBatch, device: str) -> dict[str, Any]:
    """Point name -> (value or None, quality, reason) after the normalise stage, for one device."""
    out: dict[str, Any] = {}
    for idx, _ts, value, quality, reason in Normalise(catalog.specs)(batch):
        info = catalog.points[idx]
        if info.device == device:
            out[info.key.split(".", 1)[1]] = value if quality is Quality.GOOD else (quality, reason)
    return out


def _assert_matches(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) == set(expected)
    for name, want in expected.items():
        if isinstance(want, float):
            assert got[name] == pytest.approx(want, rel=1e-12, abs=1e-12), name
        else:
            assert got[name] == want, name


@contextlib.asynccontextmanager
async def _on_one_line(cfg: Config) -> AsyncIterator[tuple[list[ModbusDriver], Line]]:
    """Drivers for every device of ``cfg`` (all on one line), entered; the line they share."""
    catalog = build_catalog(cfg)
    pool = LinePool()
    drivers = [ModbusDriver(d, catalog.by_device[d.name].start, pool) for d in cfg.devices]  # type: ignore[arg-type]
    for d in drivers:
        await d.__aenter__()
    try:
        (line,) = pool.lines.values()
        yield drivers, line
    finally:
        for d in drivers:
            await d.__aexit__()


@pytest.mark.parametrize("stub", STUBS, ids=lambda s: s.__name__)
async def test_each_stub_over_modbus_tcp(stub: type[Stub]) -> None:
    plant = stub(seed=7)
    async with SimulatedPlc(units={1: plant}, tick_s=0) as plc:
        cfg = _config([_device("modbus_tcp", "dev", 1, stub, host="127.0.0.1", port=plc.port)])
        catalog = build_catalog(cfg)
        async with ModbusDriver(cfg.devices[0], 0) as drv:  # type: ignore[arg-type]
            for tick in (0, 615, 1830, 733):
                await plc.advance(tick - plc.tick)
                _assert_matches(_values(catalog, await drv.read(), "dev"), plant.expected(tick))


async def test_three_units_share_one_rtu_over_tcp_connection() -> None:
    stubs = {1: VentilationFan(1), 2: DrainagePump(2), 3: MineHoist(3)}
    async with SimulatedPlc(units=stubs, transport="rtu_tcp", tick_s=0) as plc:
        await plc.advance(1234)
        cfg = _config(
            [_device("modbus_rtu_tcp", f"u{u}", u, type(s), host="127.0.0.1", port=plc.port) for u, s in stubs.items()]
        )
        catalog = build_catalog(cfg)
        async with _on_one_line(cfg) as (drivers, line):
            batches = await asyncio.gather(*(d.read() for d in drivers))  # serialised on the line
            for (u, s), batch in zip(stubs.items(), batches, strict=True):
                _assert_matches(_values(catalog, batch, f"u{u}"), s.expected(1234))
            assert line.opens == 1 and line.users == 3
        assert line.conn is None  # the last user closed it


async def test_rtu_on_a_serial_line_through_a_pty_pair(pty_pair: PtyPair) -> None:
    stubs = {1: BeltConveyor(4), 7: VentilationFan(5)}
    async with SimulatedPlc(units=stubs, transport="rtu", serial_port=pty_pair.a, tick_s=0) as plc:
        await plc.advance(1805)  # the conveyor is stopped for inspection
        serial = {"port": pty_pair.b, "baudrate": 19200, "parity": "N"}
        cfg = _config([_device("modbus_rtu", f"u{u}", u, type(s), **serial) for u, s in stubs.items()])
        catalog = build_catalog(cfg)
        async with _on_one_line(cfg) as (drivers, line):
            for _ in range(2):
                batches = await asyncio.gather(*(d.read() for d in drivers))
                for (u, s), batch in zip(stubs.items(), batches, strict=True):
                    _assert_matches(_values(catalog, batch, f"u{u}"), s.expected(plc.tick))
                await plc.advance()
            assert _values(catalog, batches[0], "u1")["mode"] == "inspection"
            assert line.opens == 1


@pytest.mark.parametrize("transport", ["rtu_tcp", "rtu"])
async def test_a_dead_unit_on_a_shared_line_costs_only_its_own_timeout(transport: str, request: Any) -> None:
    """Unit 2 stops answering: its points go bad (timeout) and it backs off; units 1 and 3 keep
    polling on the same connection, which is never closed, and never time out themselves."""
    logging.getLogger("edgegw.runner").setLevel(logging.ERROR)
    stubs = {1: VentilationFan(1), 2: MineHoist(2), 3: BeltConveyor(3)}
    if transport == "rtu":
        pty: PtyPair = request.getfixturevalue("pty_pair")
        server: dict[str, Any] = {"transport": "rtu", "serial_port": pty.a}
    else:
        server = {"transport": "rtu_tcp"}
    async with SimulatedPlc(units=stubs, tick_s=0, **server) as plc:
        if transport == "rtu":
            where: dict[str, Any] = {"port": pty.b, "baudrate": 19200, "parity": "N"}
            kind = "modbus_rtu"
        else:
            where, kind = {"host": "127.0.0.1", "port": plc.port}, "modbus_rtu_tcp"
        devices = []
        for u, s in stubs.items():
            d = _device(kind, f"u{u}", u, type(s), **where)
            d.update(poll_interval_ms=50, timeout_ms=300, retries=0, backoff_max_ms=600)
            devices.append(d)
        cfg = _config(devices)
        catalog = build_catalog(cfg)
        pool = LinePool()
        seen: dict[str, list[SampleBatch]] = {"u1": [], "u2": [], "u3": []}

        async def emit(batch: SampleBatch) -> None:
            if batch:
                seen[catalog.points[batch[0][0]].device].append(batch)

        runners = []
        for dev in cfg.devices:
            drv = ModbusDriver(dev, catalog.by_device[dev.name].start, pool)  # type: ignore[arg-type]
            runners.append(
                DeviceRunner(drv, catalog, emit, poll_interval_s=0.05, timeout_s=0.3, backoff_max_s=0.6,
                             backoff_initial_s=0.1, schedules=drv.schedules(), retries=0, watchdog=False)
            )
        r1, r2, r3 = runners
        tasks = [asyncio.create_task(r.run()) for r in runners]
        try:
            await eventually(lambda: r1.health.polls >= 3 and r2.health.polls >= 1 and r3.health.polls >= 3)
            plc.silence(2)
            await eventually(lambda: r2.health.failed_polls >= 2, what="two failed polls of the silenced unit")
            polls_then = (r1.health.polls, r3.health.polls)
            await eventually(lambda: r2.health.failed_polls >= 4, what="two more failures")
            # each failure held the line for one 0.3 s timeout; between them the others polled on
            assert r1.health.polls - polls_then[0] >= 2 and r3.health.polls - polls_then[1] >= 2
            assert r1.health.failed_polls == 0 and r3.health.failed_polls == 0, (r1.health, r3.health)
            (line,) = pool.lines.values()
            assert line.opens == 1, "a dead unit must not close the shared connection"
            dead = [s for b in seen["u2"] for s in b if s[3] is Quality.BAD]
            assert dead and {s[4] for s in dead} == {"timeout"}
            assert r2._backoff > 0.1  # consecutive failures back off further
            plc.revive(2)
            n = r2.health.polls
            await eventually(lambda: r2.health.polls > n and r2.health.up, what="unit 2 back")
            _assert_matches(_values(catalog, seen["u2"][-1], "u2"), stubs[2].expected(plc.tick))
        finally:
            await stop_tasks(*tasks)
