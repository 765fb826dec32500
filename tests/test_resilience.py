"""Bad-input behaviour of the walking skeleton on real servers.

- PLC unreachable: the gateway keeps running, marks the device's points bad, retries with capped
  backoff, and recovers by itself when the PLC comes up.
- Broker down: points stay in the durable buffer and are delivered when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.gas_substation import point_config
from gateway.app import Gateway
from gateway.config import parse
from gateway.core.point import Quality, SampleBatch
from gateway.ingest import Ingest
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto, free_port
from tests.conftest import eventually
from tests.test_e2e import running


def config(plc_port: int, broker_port: int, tmp: Path, name: str, **ingest: Any) -> Any:
    mqtt = {"host": "127.0.0.1", "port": broker_port, "topic_prefix": name, "keepalive_s": 5, "timeout_s": 3}
    data: dict[str, Any] = {
        "gateway": {"id": "gw-res", "site": "ordos-mine-02", "enterprise_prefix": "88.608.5288"},
        "devices": [
            {
                "type": "modbus_tcp",
                "name": "gas-sub-07",
                "host": "127.0.0.1",
                "port": plc_port,
                "poll_interval_ms": 100,
                "timeout_ms": 500,
                "backoff_max_ms": 400,
                "points": point_config(),
            }
        ],
        "buffer": {"path": str(tmp / "buffer.db"), "linger_ms": 20},
        "uplink": {**mqtt, "client_id": f"{name}-gw"},
    }
    if ingest:
        data["ingest"] = {"mqtt": {**mqtt, "client_id": f"{name}-ingest"}, "linger_ms": 20,
                          "dead_letter_path": str(tmp / "dead-letters.db"), **ingest}
    return parse(data)


@pytest.mark.integration
async def test_unreachable_plc_is_marked_bad_then_recovers(tmp_path: Path, mosquitto: Mosquitto) -> None:
    port = free_port()  # nothing listens here yet
    seen: list[SampleBatch] = []
    gw = Gateway(config(port, mosquitto.port, tmp_path, "res-plc"), observer=seen.append)
    runner = gw.runners[0]
    async with running(gw.run()):
        await eventually(lambda: runner.health.connect_failures >= 3, what="three failed connects")
        bad = [s for b in seen for s in b]
        assert bad and all(s[3] is Quality.BAD and s[2] is None and s[4] == "unreachable" for s in bad)
        assert {s[0] for s in bad} == set(gw.catalog.by_device["gas-sub-07"])
        assert not runner.health.up
        async with SimulatedPlc(port=port, tick_s=0, seed=3):
            await eventually(lambda: runner.health.up, what="the device to come back")
            seen.clear()
            await eventually(lambda: len(seen) >= 3, what="good polls after recovery")
            good = [s for b in seen for s in b]
            assert all(s[3] is Quality.GOOD for s in good)
        # the PLC is gone again mid-run: points turn bad, the gateway keeps going
        await eventually(lambda: not runner.health.up, what="the device to be seen down")
        await eventually(lambda: seen[-1][0][4] in ("unreachable", "disconnected", "timeout"), what="bad points")


@pytest.mark.integration
async def test_broker_outage_keeps_points_buffered_then_delivers(tmp_path: Path) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="edgegw-outage-"))
    broker = Mosquitto(workdir=workdir)
    broker.start()
    lp = tmp_path / "out.lp"
    try:
        async with SimulatedPlc(tick_s=0.05, seed=5) as plc:
            cfg = config(plc.port, broker.port, tmp_path, "res-broker", influx={"api": "file", "path": str(lp)})
            gw = Gateway(cfg)
            ingest = Ingest(cfg.ingest)
            async with running(ingest.run()):
                await asyncio.wait_for(ingest.subscribed.wait(), 10)
                async with running(gw.run()):
                    await eventually(lambda: gw.forwarder.stats.published_batches >= 3, what="first deliveries")
                    broker.stop()
                    await eventually(lambda: not gw.forwarder.stats.connected, what="the uplink to notice")
                    await eventually(lambda: gw.buffer.pending_batches >= 10, what="a backlog in the buffer")
                    assert gw.runners[0].health.up  # acquisition goes on while the uplink is down
                    broker.start()
                    await eventually(lambda: gw.forwarder.stats.connected, timeout=30, what="reconnect")
                    await eventually(lambda: gw.buffer.pending_batches <= 1, timeout=30, what="the backlog to drain")
                accepted = gw.buffer_counters["accepted_points"]
                assert gw.buffer_counters["delivered_points"] == accepted
                assert gw.buffer_counters["dropped_oldest_points"] == 0

                def unique_lines() -> int:
                    with contextlib.suppress(FileNotFoundError):
                        return len({(ln.split(" ")[0], ln.rsplit(" ", 1)[1]) for ln in lp.read_text().splitlines()})
                    return 0

                await eventually(lambda: unique_lines() >= accepted, timeout=30, what="every accepted point at ingest")
                assert unique_lines() == accepted
    finally:
        broker.stop()
