"""The whole edge role with OPC UA devices: subscription + polling -> normalise -> buffer -> MQTT."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.codec import decode
from gateway.config import parse
from gateway.core.point import Point, Quality
from gateway.runner import DeviceRunner, StreamRunner
from hil.opcua_server import PlantServer
from hil.services import Mosquitto
from tests.collector import collect
from tests.conftest import eventually
from tests.opcua.conftest import device

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_gateway_runs_opcua_devices_end_to_end(plant: PlantServer, mosquitto: Mosquitto, tmp_path: Path) -> None:
    stove = [
        {"name": "dome", "node_id": plant.node_id("HotStove2.Dome.Temperature"), "unit": "degC"},
        {"name": "hot_blast", "node_id": plant.node_id("HotStove2.Blast.HotBlastTemperature"), "unit": "degC"},
    ]
    cells = [{"name": "v1", "node_id": plant.node_id("CellLine3.Cell01.Voltage"), "unit": "V", "scale": 1000.0}]
    cfg = parse({
        "gateway": {"id": "gw-baotou", "site": "baotou-steel", "enterprise_prefix": "88.608.5288"},
        "devices": [
            device(plant.endpoint, stove, name="stove"),
            device(plant.endpoint, cells, name="cells", mode="polling", poll_interval_ms=100),
        ],
        "buffer": {"path": str(tmp_path / "buf.db"), "linger_ms": 20},
        "uplink": {"host": "127.0.0.1", "port": mosquitto.port, "topic_prefix": "opcua-e2e"},
    })
    # the oracle: the plant's node specs (firmware_stubs/opcua_plants.py) at the plant's current tick
    spec = {s.string_id: s for s in plant.specs}
    nodes = {"stove.dome": "HotStove2.Dome.Temperature", "stove.hot_blast": "HotStove2.Blast.HotBlastTemperature",
             "cells.v1": "CellLine3.Cell01.Voltage"}
    scale = {"cells.v1": 1000.0}  # V scaled to mV by the pipeline
    want: dict[str, tuple[str, float]] = {}
    for key, n in nodes.items():
        value = spec[n].value(plant.t)
        assert isinstance(value, float), (n, value)
        want[key] = (spec[n].status(plant.t), value * scale.get(key, 1.0))
    units = {"stove.dome": "degC", "stove.hot_blast": "degC", "cells.v1": "V"}
    gw = Gateway(cfg)
    assert [type(r) for r in gw.runners] == [StreamRunner, DeviceRunner]
    async with collect(mosquitto.port, "opcua-e2e/+/+/data", "opcua-e2e-subscriber") as received:
        task = asyncio.create_task(gw.run())
        try:

            def arrived() -> dict[str, list[Point]]:
                out: dict[str, list[Point]] = {}
                for payload in received:
                    for p in decode(payload).points:
                        out.setdefault(p.key, []).append(p)
                return out

            await eventually(lambda: set(arrived()) >= set(want), what="every point at the broker")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert want["cells.v1"][0] == "Good"  # the scaled point is judged by value
    for key, points in arrived().items():
        assert key in want, key
        status, value = want[key]
        for p in points:  # what reached the broker: the plant's value (scaled) or status, the point's code and unit
            if status == "Good":
                assert (p.quality, p.value) == (Quality.GOOD, value), (p, value)
            else:
                assert p.quality is not Quality.GOOD and p.reason == status, (p, status)
            assert p.code == f"88.608.5288/DEV.baotou-steel.{key}"
            assert p.unit == units[key], p
