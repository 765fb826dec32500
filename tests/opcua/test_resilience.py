"""Server restart: the session and every monitored item come back with no manual action."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from drivers.opcua.driver import OpcUaDriver
from gateway.core.point import Quality
from gateway.runner import StreamRunner
from hil.opcua_server import PlantServer
from hil.tcp_proxy import FaultProxy
from tests.conftest import eventually
from tests.opcua.conftest import Collector, catalog_for, device, streaming

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_subscription_recovers_after_server_restart() -> None:
    srv = PlantServer(["hot_stove"])
    await srv.start()
    try:
        points = [
            {"name": "dome", "node_id": srv.node_id("HotStove2.Dome.Temperature")},
            {"name": "phase", "node_id": srv.node_id("HotStove2.Status.Phase")},
        ]
        cfg, cat = catalog_for(device(srv.endpoint, points, keepalive_count=5))
        drv = OpcUaDriver(cfg.devices[0], 0)
        out = Collector()
        runner = StreamRunner(drv, cat, out, connect_timeout_s=10, backoff_max_s=1)
        task = asyncio.create_task(runner.run())
        try:
            await eventually(lambda: (s := out.latest(0)) is not None and s[3] is Quality.GOOD, what="first value")
            await srv.stop()
            await eventually(lambda: not runner.health.up, what="device down")
            assert out.latest(0)[3] is Quality.BAD  # type: ignore[index]
            await srv.start()  # same port, fresh server: no session or subscription survives
            await srv.tick(5)
            want = srv.specs[0].value(srv.t)
            await eventually(lambda: (s := out.latest(0)) is not None and s[2] == want, timeout=30,
                             what="data flowing after restart")
            assert runner.health.up
            assert drv.counters.sessions >= 2
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await srv.stop()


async def test_keepalive_watchdog_detects_a_silent_link_and_recovers(plant: PlantServer) -> None:
    """A frozen link (socket open, nothing flows) is caught by the watchdog, then data resumes."""
    async with FaultProxy("127.0.0.1", plant.port) as proxy:
        endpoint = f"opc.tcp://127.0.0.1:{proxy.port}/edgegw/"
        points = [{"name": "v", "node_id": plant.node_id("CellLine3.Cell01.Voltage")}]
        cfg, cat = catalog_for(device(endpoint, points, keepalive_count=3, timeout_ms=1000))
        drv = OpcUaDriver(cfg.devices[0], 0)
        out = Collector()
        runner = StreamRunner(drv, cat, out, connect_timeout_s=5, backoff_max_s=1)
        task = asyncio.create_task(runner.run())
        try:
            await eventually(lambda: (s := out.latest(0)) is not None and s[3] is Quality.GOOD, what="first value")
            proxy.freeze()
            await eventually(lambda: not runner.health.up, timeout=30, what="watchdog fires")
            assert out.latest(0)[2] is None  # type: ignore[index]
            assert out.latest(0)[4] in ("keepalive_timeout", "disconnected", "unreachable")  # type: ignore[index, operator]
            proxy.cut()
            proxy.thaw()
            await plant.tick()
            want = next(s for s in plant.specs if s.string_id == "CellLine3.Cell01.Voltage").value(plant.t)
            await eventually(lambda: (s := out.latest(0)) is not None and s[2] == want, timeout=30,
                             what="data after the link is back")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_node_deleted_at_run_time_turns_bad_and_the_others_keep_flowing() -> None:
    """asyncua servers report a deleted monitored node as a subscription status change that names no
    node: the driver finds which one with a Read, marks it bad, and keeps the session."""
    srv = PlantServer(["hot_stove"])
    await srv.start()
    try:
        dome, phase = srv.node_id("HotStove2.Dome.Temperature"), srv.node_id("HotStove2.Status.Phase")
        points = [{"name": "dome", "node_id": dome}, {"name": "phase", "node_id": phase}]
        async with streaming(device(srv.endpoint, points), connect_timeout_s=10) as (drv, runner, out):
            await eventually(lambda: all((s := out.latest(i)) is not None and s[3] is Quality.GOOD for i in (0, 1)),
                             what="first values")
            await srv.delete_node(phase)
            await eventually(lambda: (s := out.latest(1)) is not None and s[3] is Quality.BAD, what="deleted node bad")
            assert out.latest(1)[2:] == (None, Quality.BAD, "BadNodeIdUnknown")  # type: ignore[index]
            await srv.tick(3)
            want = srv.specs[0].value(srv.t)
            await eventually(lambda: (s := out.latest(0)) is not None and s[2] == want, what="others still flowing")
            assert out.latest(1)[3] is Quality.BAD  # type: ignore[index]
            assert drv.counters.sessions == 1 and runner.health.up  # no reconnect for one missing node
    finally:
        await srv.stop()
