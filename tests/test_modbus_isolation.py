"""A dead device (accepts TCP, never answers) must not slow a live one polled next to it."""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from drivers.modbus.driver import ModbusTcpDriver
from gateway.catalog import build_catalog
from gateway.config import parse
from gateway.core.point import Quality, SampleBatch
from gateway.runner import DeviceRunner
from hil.modbus_server import SimulatedPlc
from tests.conftest import eventually, stop_tasks
from tests.test_config import GOOD


async def _swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A black hole: reads requests forever and answers none (a PLC hung behind a serial server)."""
    while await reader.read(4096):
        pass
    writer.close()


async def test_a_dead_device_does_not_delay_a_live_one() -> None:
    logging.getLogger("edgegw.runner").setLevel(logging.ERROR)
    hole = await asyncio.start_server(_swallow, "127.0.0.1", 0)
    hole_port = hole.sockets[0].getsockname()[1]
    async with SimulatedPlc(tick_s=0) as plc:
        data: dict[str, Any] = copy.deepcopy(GOOD)
        live = data["devices"][0]
        live.update(port=plc.port, poll_interval_ms=50, timeout_ms=300)
        dead = {**copy.deepcopy(live), "name": "dead", "port": hole_port}
        for p in dead["points"]:
            p.pop("code", None)
        data["devices"] = [live, dead]
        cfg = parse(data)
        catalog = build_catalog(cfg)
        bad: list[SampleBatch] = []

        async def emit(batch: SampleBatch) -> None:
            dead_samples = [s for s in batch if s[0] >= len(live["points"])]
            if dead_samples:
                bad.append(dead_samples)

        runners = []
        first = 0
        for dev in cfg.devices:
            drv = ModbusTcpDriver(dev, first)  # type: ignore[arg-type]
            first += len(dev.points)
            runners.append(DeviceRunner(drv, catalog, emit, poll_interval_s=0.05, timeout_s=0.3, backoff_max_s=0.3))
        tasks = [asyncio.create_task(r.run()) for r in runners]
        try:
            live_r, dead_r = runners
            await eventually(lambda: dead_r.health.failed_polls >= 3, what="three failed polls of the dead device")
            polls_then = live_r.health.polls
            await eventually(lambda: dead_r.health.failed_polls >= 5, what="two more failures")
            # two dead-device timeouts (>= 0.6 s) passed: a live device blocked behind them would
            # have polled at most twice; its own task polled on
            assert live_r.health.polls - polls_then >= 4, live_r.health
            assert not live_r.health.failed_polls, live_r.health
            assert bad and all(s[3] is Quality.BAD and s[4] in ("timeout", "unreachable") for b in bad for s in b)
            print("live device deadline misses:", live_r.health.deadline_misses)
        finally:
            try:
                await stop_tasks(*tasks)
            finally:
                hole.close()
