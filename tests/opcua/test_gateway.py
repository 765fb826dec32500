"""The whole edge role with OPC UA devices: subscription + polling -> normalise -> buffer -> MQTT."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import parse
from gateway.point import Quality, SampleBatch
from gateway.runner import DeviceRunner, StreamRunner
from hil.opcua_server import PlantServer
from hil.services import Mosquitto
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
        "uplink": {"host": "127.0.0.1", "port": mosquitto.port},
    })
    seen: SampleBatch = []
    gw = Gateway(cfg, observer=seen.extend)
    assert [type(r) for r in gw.runners] == [StreamRunner, DeviceRunner]
    task = asyncio.create_task(gw.run())
    try:
        keys = {p.key: p.index for p in gw.catalog.points}
        for key in keys:
            await eventually(lambda key=key: any(s[0] == keys[key] for s in seen), what=f"{key} delivered")
        v1 = next(s for s in reversed(seen) if s[0] == keys["cells.v1"])
        assert v1[3] is Quality.GOOD and v1[2] > 1000  # ~9.6 V scaled to mV by the pipeline
        await eventually(lambda: gw.forwarder.stats.published_batches > 0, what="published to the broker")
        assert gw.catalog.point(seen[0]).code.startswith("88.608.5288/")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
