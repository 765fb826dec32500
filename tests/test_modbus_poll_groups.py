"""Poll groups: points of a device read at their group's interval, each group planned on its own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from drivers.modbus.driver import ModbusDriver
from firmware_stubs.ventilation_fan import VentilationFan
from gateway.catalog import build_catalog
from gateway.config import parse
from gateway.core.point import Quality, SampleBatch
from gateway.runner import DeviceRunner
from hil.modbus_server import SimulatedPlc
from tests.conftest import eventually, stop_tasks

FAST = {"airflow", "pressure", "speed", "vibration"}  # input registers 2-10
SLOW = {"energy", "model", "state"}  # input registers 12-15, holding registers 0 and 2-9


async def test_fast_and_slow_groups_poll_at_their_own_intervals() -> None:
    fan = VentilationFan(2)
    group_of = {**dict.fromkeys(FAST, "fast"), **dict.fromkeys(SLOW, "slow")}
    async with SimulatedPlc(units={1: fan}, tick_s=0) as plc:
        cfg = parse({
            "gateway": {"id": "gw1", "site": "s1", "enterprise_prefix": "88.608.5288"},
            "devices": [{
                "type": "modbus_tcp", "name": "fan", "host": "127.0.0.1", "port": plc.port,
                "poll_interval_ms": 200, "poll_groups": {"fast": 40, "slow": 400},
                "points": VentilationFan.point_config(group_of),
            }],
        })
        catalog = build_catalog(cfg)
        drv = ModbusDriver(cfg.devices[0], 0)  # type: ignore[arg-type]
        # each group is planned on its own: fast = 1 block; slow = input 12-15 + holding 0-9;
        # the default group ("") = the rest: input 0-1 + 6-8 + 11 bridged, holding 1, coil, 2 inputs
        sizes = {name: len(g.blocks) for name, g in drv.groups.items()}
        assert sizes == {"": 4, "fast": 1, "slow": 2}, sizes
        names = [p.name for p in cfg.devices[0].points]
        batches: dict[str, int] = {"": 0, "fast": 0, "slow": 0}

        async def emit(batch: SampleBatch) -> None:
            got = {names[s[0]] for s in batch}
            assert all(s[3] is Quality.GOOD for s in batch), batch
            kind = "fast" if got == FAST else "slow" if got == SLOW else ""
            if kind == "":
                assert not got & (FAST | SLOW), got
            batches[kind] += 1

        runner = DeviceRunner(drv, catalog, emit, poll_interval_s=0.2, timeout_s=1.0, backoff_max_s=1.0,
                              schedules=drv.schedules(), watchdog=False)
        task = asyncio.create_task(runner.run())
        try:
            await eventually(lambda: batches["slow"] >= 3, what="three slow polls")
            # 3 slow polls span >= 0.8 s: fast (40 ms) polled many times more, default (200 ms) in between
            assert batches["fast"] >= 4 * batches["slow"] and batches[""] > batches["slow"], batches
            assert runner.health.failed_polls == 0
        finally:
            await stop_tasks(task)



def test_the_gateway_gives_devices_on_one_line_one_connection_and_their_poll_groups(tmp_path: Path) -> None:
    from drivers.modbus.driver import ModbusDriver as Driver
    from gateway.app import Gateway

    def dev(name: str, unit: int, port: int) -> dict[str, Any]:
        return {"type": "modbus_rtu_tcp", "name": name, "host": "127.0.0.1", "port": port, "unit_id": unit,
                "poll_groups": {"fast": 100}, "retries": 2,
                "points": [{"name": "a", "address": 0, "group": "fast"}, {"name": "b", "address": 1}]}

    cfg = parse({
        "gateway": {"id": "gw1", "site": "s1", "enterprise_prefix": "88.608.5288"},
        "devices": [dev("u1", 1, 4001), dev("u2", 2, 4001), dev("other", 1, 4002)],
        "buffer": {"path": str(tmp_path / "buf.db")},
        "uplink": {"host": "127.0.0.1", "port": 1883},
    })
    gw = Gateway(cfg)
    try:
        drivers = [r.driver for r in gw.runners]
        assert all(isinstance(d, Driver) for d in drivers)
        u1, u2, other = drivers
        assert u1.line is u2.line and other.line is not u1.line  # type: ignore[union-attr]
        runner = gw.runners[0]
        assert isinstance(runner, DeviceRunner)
        assert sorted(i for i, _ in runner.schedules) == [0.1, 1.0] and runner.retries == 2
        assert not runner.watchdog  # the driver times each request once the line is free
    finally:
        gw.buffer.close()
