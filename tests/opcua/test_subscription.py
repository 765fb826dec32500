"""Subscription and polling against a real asyncua plant server; the firmware stub is the oracle."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

import pytest

from drivers.opcua.driver import OpcUaDriver
from gateway.core.point import Quality
from gateway.runner import StreamRunner
from hil.opcua_server import PlantServer
from tests.conftest import eventually
from tests.opcua.conftest import Collector, catalog_for, device, streaming

pytestmark = pytest.mark.asyncio(loop_scope="session")


def gasifier_points(plant: PlantServer) -> list[dict[str, Any]]:
    return [
        {"name": "temp", "node_id": plant.node_id("Gasifier01.Reactor.Temperature"), "unit": "degC"},
        {"name": "wall", "node_id": plant.node_id("Gasifier01.Reactor.WallTemp"), "unit": "degC"},
        {"name": "co2", "node_id": plant.node_id("Gasifier01.Syngas.CO2")},
        {"name": "running", "node_id": plant.node_id("Gasifier01.Status.Running")},
        {"name": "mode", "node_id": plant.node_id("Gasifier01.Status.Mode")},
        {"name": "trips", "node_id": plant.node_id("Gasifier01.Status.BurnerTrips")},
        {"name": "ghost", "node_id": "ns=2;s=Does.Not.Exist"},
        {"name": "t1", "node_id": "ns=2;s=Arrays.Temps", "array_index": 1},
        {"name": "temps", "node_id": "ns=2;s=Arrays.Temps", "array_mode": "json"},
    ]


async def test_polling_reads_every_point_in_batches_under_the_server_limit(plant: PlantServer) -> None:
    cfg, cat = catalog_for(device(plant.endpoint, gasifier_points(plant), mode="polling"))
    drv = OpcUaDriver(cfg.devices[0], 0)
    async with drv:
        batch = await drv.read()
        assert drv.counters.read_calls == 3  # 9 nodes, the server advertises MaxNodesPerRead = 4
    by_name = {cat.points[s[0]].key.split(".", 1)[1]: s for s in batch}
    assert len(batch) == 9
    spec = {s.string_id: s for s in plant.specs}
    t = plant.t
    assert by_name["temp"][2] == spec["Gasifier01.Reactor.Temperature"].value(t)
    assert by_name["running"][2] is spec["Gasifier01.Status.Running"].value(t)
    assert by_name["mode"][2] == spec["Gasifier01.Status.Mode"].value(t)
    assert by_name["trips"][2] == spec["Gasifier01.Status.BurnerTrips"].value(t)
    assert by_name["ghost"][2:] == (None, Quality.BAD, "BadNodeIdUnknown")
    assert by_name["t1"][2] == 2.5
    assert by_name["temps"][2] == "[1.5,2.5,3.5]"
    wall_status = spec["Gasifier01.Reactor.WallTemp"].status(t)
    if wall_status == "Good":
        assert by_name["wall"][3] is Quality.GOOD
    else:
        assert by_name["wall"][2:] == (None, Quality.BAD, wall_status)


async def test_subscription_delivers_changes_statuses_and_survives_an_unknown_node(plant: PlantServer) -> None:
    cfg, cat = catalog_for(device(plant.endpoint, gasifier_points(plant)))
    drv = OpcUaDriver(cfg.devices[0], 0)
    out = Collector()
    runner = StreamRunner(drv, cat, out, connect_timeout_s=10, backoff_max_s=1)
    task = asyncio.create_task(runner.run())
    try:
        idx = {p.key.split(".", 1)[1]: p.index for p in cat.points}
        await eventually(lambda: out.latest(idx["ghost"]) is not None, what="ghost reported bad")
        assert out.latest(idx["ghost"])[2:] == (None, Quality.BAD, "BadNodeIdUnknown")  # type: ignore[index]
        spec = {s.string_id: s for s in plant.specs}
        # step the plant through a WallTemp fault window and a CO2 uncertain window
        for _ in range(25):
            await plant.tick()
            t = plant.t
            want = spec["Gasifier01.Reactor.Temperature"].value(t)
            await eventually(
                lambda want=want: (s := out.latest(idx["temp"])) is not None and s[2] == want,
                what=f"temperature at tick {t}",
            )
            wall = spec["Gasifier01.Reactor.WallTemp"].status(t)
            if wall != "Good":
                await eventually(
                    lambda wall=wall: (s := out.latest(idx["wall"])) is not None and s[4] == wall,
                    what="wall-temperature fault",
                )
                assert out.latest(idx["wall"])[2] is None  # type: ignore[index]
            co2 = spec["Gasifier01.Syngas.CO2"].status(t)
            if co2 != "Good":
                await eventually(
                    lambda: (s := out.latest(idx["co2"])) is not None and s[3] is Quality.UNCERTAIN,
                    what="uncertain CO2",
                )
                assert out.latest(idx["co2"])[4] == co2  # type: ignore[index]
                assert out.latest(idx["co2"])[2] is not None  # type: ignore[index]
        assert drv.counters.bad_items == 1
        assert drv.counters.create_item_calls == 2  # 9 items, MaxMonitoredItemsPerCall = 5
        assert runner.health.up
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_driver_keeps_no_point_model_and_subscribes_again_after_a_reconnect(
        plant: PlantServer, caplog: pytest.LogCaptureFixture) -> None:
    """#17: the driver keeps what each point needs (node id text, name, item settings with the device's
    defaults applied), not the parsed point models (~1.2 KB a point) nor the monitored-item requests
    (~0.3 KB a point): those are made again at each connect, so a reconnect must subscribe every item
    again, with its own settings (the deadband of the first point, the unknown node reported by name)."""
    from drivers.opcua.config import DeadbandType, OpcUaPoint

    pts = [{"name": "current_db", "node_id": plant.node_id("CellLine3.Rectifier.LineCurrent"),
            "deadband_type": "absolute", "deadband_value": 1.0}, *gasifier_points(plant)]
    cfg, cat = catalog_for(device(plant.endpoint, pts))
    drv = OpcUaDriver(cfg.devices[0], 0)
    del cfg
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, OpcUaPoint)]
    assert drv.config.points == [] and drv.config.endpoint == plant.endpoint
    assert drv._item_settings[0][1:3] == (DeadbandType.ABSOLUTE, 1.0)  # the point's own deadband
    assert drv._item_settings[1] is drv._item_settings[2]  # equal settings (the device's) stored once
    idx = {p.key.split(".", 1)[1]: p.index for p in cat.points}
    for session in (1, 2):
        out = Collector()
        async with drv:
            async for batch in drv.stream():
                await out(batch)
                if all(out.latest(i) is not None for i in idx.values()):
                    break
        assert drv.counters.sessions == session
        assert drv.counters.bad_items == session  # the unknown node, once per subscription
        assert out.latest(idx["ghost"])[2:] == (None, Quality.BAD, "BadNodeIdUnknown")  # type: ignore[index]
        assert out.latest(idx["temp"])[3] is Quality.GOOD  # type: ignore[index]
    assert "node ns=2;s=Does.Not.Exist (point ghost) cannot be monitored: BadNodeIdUnknown" in caplog.text


async def test_absolute_deadband_suppresses_small_changes(plant: PlantServer) -> None:
    nid = plant.node_id("CellLine3.Rectifier.LineCurrent")  # 6.0 +- 0.05 kA
    cfg, cat = catalog_for(
        device(
            plant.endpoint,
            [
                {"name": "current_db", "node_id": nid, "deadband_type": "absolute", "deadband_value": 1.0},
                {"name": "current", "node_id": nid},
            ],
        )
    )
    drv = OpcUaDriver(cfg.devices[0], 0)
    out = Collector()
    runner = StreamRunner(drv, cat, out, connect_timeout_s=10, backoff_max_s=1)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: out.latest(0) is not None and out.latest(1) is not None, what="initial values")
        for _ in range(6):
            await plant.tick()
            n = sum(1 for s in out.samples if s[0] == 1)
            await eventually(lambda n=n: sum(1 for s in out.samples if s[0] == 1) > n, what="undamped change")
        assert sum(1 for s in out.samples if s[0] == 0) == 1  # only the initial value passed the 1 kA deadband
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_wrong_endpoint_is_a_clear_error_naming_the_device() -> None:
    from gateway.core.errors import ConnectError

    cfg, _ = catalog_for(device("opc.tcp://127.0.0.1:1/", [{"name": "a", "node_id": "ns=2;s=A"}], mode="polling"))
    with pytest.raises(ConnectError, match=r"^opc1: cannot connect to opc.tcp://127.0.0.1:1/"):
        async with OpcUaDriver(cfg.devices[0], 0):
            pass


async def test_timestamp_choice_per_point(plant: PlantServer) -> None:
    nid = plant.node_id("HotStove2.Gas.BfgFlow")
    pts = [{"name": n, "node_id": nid, "timestamp": n} for n in ("source", "server", "gateway")]
    cfg, _ = catalog_for(device(plant.endpoint, pts, mode="polling"))
    async with OpcUaDriver(cfg.devices[0], 0) as drv:
        ticked = time.time_ns()
        await plant.tick()  # the plant writes the value, stamped with its source time, now
        before = time.time_ns()
        batch = await drv.read()
        after = time.time_ns()
    source, server, gateway = (s[1] for s in batch)
    assert before <= gateway <= after
    # each within the moments it names, on the same clock: a zero, 1970, local-time or stale stamp fails
    assert ticked <= source <= before, (ticked, source, before)  # when the plant wrote the value
    assert ticked <= server <= after, (ticked, server, after)  # when the server took (or served) it


@pytest.mark.parametrize("in_flight", [1, 3])
async def test_publish_requests_stay_queued_at_the_server(plant: PlantServer, in_flight: int) -> None:
    """With nothing to send, the server holds every PublishRequest: as many as configured are waiting."""
    points = [{"name": "temp", "node_id": plant.node_id("Gasifier01.Reactor.Temperature")}]
    dev = device(plant.endpoint, points, publish_requests=in_flight, keepalive_count=100)
    async with streaming(dev) as (drv, _, out):
        await eventually(lambda: out.latest(0) is not None, what="first value")

        def waiting() -> int:
            client = drv._client
            return 0 if client is None else len(client.uaclient.protocol._callbackmap)

        await eventually(lambda: waiting() == in_flight, what=f"{in_flight} PublishRequests pending")
