"""Persistent session and protocol choice against a real mosquitto: a fixed client id with clean
start off and a session expiry gets its session back on reconnect, over MQTT 5 and 3.1.1."""

from __future__ import annotations

import pytest

from gateway.config import MqttConfig, UplinkConfig
from gateway.sinks.mqtt import MqttClient, MqttUplink
from hil.services import Mosquitto

__all__: list[str] = []


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_session_survives_reconnect(mosquitto: Mosquitto, protocol: str) -> None:
    cfg = MqttConfig(port=mosquitto.port, protocol=protocol, session_expiry_s=60, timeout_s=5)  # type: ignore[arg-type]
    cid = f"session-probe-{protocol}"
    async with MqttClient(cfg, cid) as first:
        await first.subscribe("probe/#", qos=1)  # something for the broker to keep
    async with MqttClient(cfg, cid) as again:
        assert again.session_present


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_uplink_publishes_with_either_protocol(mosquitto: Mosquitto, protocol: str) -> None:
    cfg = UplinkConfig(port=mosquitto.port, protocol=protocol, timeout_s=5,  # type: ignore[arg-type]
                       no_subscribers="accept")  # nothing subscribes: 0x10 counts as delivered
    uplink = MqttUplink(cfg, "s1", f"proto-{protocol.replace('.', '')}")
    assert uplink.data_topic == f"edgegw/s1/proto-{protocol.replace('.', '')}/data"
    async with uplink.connect() as conn:
        await conn.write(b"x")
        if protocol == "5":
            assert conn.window >= 1  # the broker's Receive Maximum
