"""The retained state message after a clean stop: the broker sends the last will (offline) only
when a connection breaks, so a gateway stopped by SIGTERM must say offline itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.buffer import SqliteBuffer
from gateway.config import MqttConfig
from gateway.forwarder import Forwarder
from gateway.sinks.mqtt import MqttClient, MqttUplink
from hil.services import Service
from tests.conftest import eventually

__all__: list[str] = []


async def _retained_state(port: int, topic: str) -> dict[str, object]:
    async with MqttClient(MqttConfig(port=port), "state-watch") as watch:
        await watch.subscribe(topic, qos=1)
        async with asyncio.timeout(10):
            msg = await anext(aiter(watch.messages))
    assert isinstance(msg.payload, bytes)
    state: dict[str, object] = json.loads(msg.payload)
    return state


async def test_a_clean_stop_leaves_offline_retained(
    mosquitto: Service, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="edgegw.forwarder")
    buf = SqliteBuffer(tmp_path / "buf.db")
    uplink = MqttUplink(MqttConfig(port=mosquitto.port), "s1", "gw-clean-stop")
    fwd = Forwarder(buf, uplink, asyncio.Event(), max_inflight=4, backoff_max_s=0.5)
    task = asyncio.create_task(fwd.run())
    try:
        await eventually(lambda: fwd.stats.connected, what="connected")
        # the log tells the telemetry connection from the alarm one (`<client id>-alarm`)
        assert f"Connected to broker 127.0.0.1:{mosquitto.port} as edgegw-gw-clean-stop." in caplog.messages
        assert (await _retained_state(mosquitto.port, uplink.state_topic))["state"] == "online"
    finally:
        task.cancel()  # what the gateway does to its forwarder on SIGTERM, after the drain
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (await _retained_state(mosquitto.port, uplink.state_topic))["state"] == "offline"
    buf.close()
