"""Device health that tells the truth: a device with a wrong unit id answers every request with an
exception, so it is not "up" but degraded, with the dominant reason and the count; the change is
logged at WARNING, carried by the retained state message and shown on the status endpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import MqttConfig
from gateway.sinks.mqtt import MqttClient
from gateway.status import gateway_status
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto
from tests.conftest import eventually
from tests.test_e2e import running
from tests.test_http import plant_config

EXC4 = "modbus_exception_4_server_device_failure"


async def _state_messages(port: int, topic: str, into: list[dict[str, Any]]) -> None:
    async with MqttClient(MqttConfig(port=port), "health-watch") as watch:
        await watch.subscribe(topic, qos=1)
        async for msg in watch.messages:
            assert isinstance(msg.payload, bytes)
            into.append(json.loads(msg.payload))


async def test_a_wrong_unit_id_is_degraded_with_reason_and_count_everywhere(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edgegw.runner")
    async with SimulatedPlc(tick_s=0, seed=3, unit_id=1) as plc:
        cfg = plant_config([plc.port], mosquitto.port, tmp_path, name="health", unit_id=9)
        gw = Gateway(cfg)
        n = len(cfg.devices[0].points)
        states: list[dict[str, Any]] = []
        async with running(gw.run(), _state_messages(mosquitto.port, gw.uplink.state_topic, states)):
            health = gw.runners[0].health
            await eventually(lambda: health.state == "degraded", what="gas-sub-01 degraded")
            assert (health.reason, health.bad_points, health.points) == (EXC4, n, n)
            line = f"Device gas-sub-01 degraded: {n} of {n} points bad: {EXC4}"
            assert any(r.message == line and r.levelno == logging.WARNING for r in caplog.records), caplog.messages
            assert not any("is up" in m for m in caplog.messages)  # answering is not being up

            def retained() -> bool:
                devices = states[-1].get("devices", {}) if states else {}
                return devices.get("gas-sub-01") == {"state": "degraded", "reason": EXC4, "bad_points": n,
                                                      "points": n}

            await eventually(retained, what="the degraded device in the retained state message")
            assert states[-1]["state"] == "online"
            status = gateway_status(gw, gw.live)
            (dev,) = status["devices"]
            assert (dev["state"], dev["reason"]) == ("degraded", EXC4)
            # the status summary counts it the same way once the pipeline passed its samples on
            await eventually(lambda: gateway_status(gw, gw.live)["devices"][0]["bad_points"] == n)

            # the PLC stops: down (logged once), back: degraded again, each change republished
            await plc.stop()
            await eventually(lambda: health.state == "down", what="gas-sub-01 down")
            await eventually(lambda: states[-1]["devices"]["gas-sub-01"]["state"] == "down", what="down retained")
            await plc.start()
            await eventually(lambda: health.state == "degraded", what="degraded again")
            assert sum(r.message == line for r in caplog.records) == 2
