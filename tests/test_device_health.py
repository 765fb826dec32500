"""Device health that tells the truth: a device with a wrong unit id answers every request with an
exception, so it is not "up" but degraded, with the dominant reason and the count; the change is
logged at WARNING, carried by the retained state message and shown on the status endpoint."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import MqttConfig, load
from gateway.sinks.mqtt import MqttClient
from gateway.status import gateway_status
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto, free_port
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
            down = [m for m in caplog.messages if "is down" in m]
            # the device named once, then the reason code, then the detail
            assert down and down[-1].startswith(("Device gas-sub-01 is down: unreachable: ",
                                                 "Device gas-sub-01 is down: disconnected: ",
                                                 "Device gas-sub-01 is down: timeout: ")), down
            assert "gas-sub-01:" not in down[-1], down
            await eventually(lambda: states[-1]["devices"]["gas-sub-01"]["state"] == "down", what="down retained")
            await plc.start()
            await eventually(lambda: health.state == "degraded", what="degraded again")
            assert sum(r.message == line for r in caplog.records) == 2


async def test_edgegw_status_shows_the_running_gateways_device_health(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    import tomli_w

    from gateway.cli import main

    port = free_port()
    async with SimulatedPlc(tick_s=0, seed=3, unit_id=1) as plc:
        path = tmp_path / "gateway.toml"
        path.write_text(tomli_w.dumps({
            "gateway": {"id": "gw-status", "site": "baotou-mine-01", "enterprise_prefix": "88.608.5288",
                        "site_display_name": "包头某煤矿"},
            "devices": [{"type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "port": plc.port,
                         "unit_id": 9, "poll_interval_ms": 100, "display_name": "瓦斯监控分站",
                         "points": [{"name": "seq", "address": 0}, {"name": "ch4", "address": 1}]}],
            "buffer": {"path": str(tmp_path / "buffer.db")},
            "uplink": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": "gw-status"},
            "http": {"listen": f"127.0.0.1:{port}"},
        }))
        gw = Gateway(load(str(path)))
        async with running(gw.run()):
            await eventually(lambda: gw.runners[0].health.state == "degraded", what="degraded")
            code = await asyncio.to_thread(main, ["status", "-c", str(path)])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "gas-sub-01" in line)
    assert [c.strip() for c in row.split("│")[1:7]] == ["gas-sub-01", "瓦斯监控分站", "degraded", EXC4, "2", "2"]
    assert "uplink 127.0.0.1:" in out and "buffer:" in out
    assert "site 包头某煤矿 (baotou-mine-01) · gateway gw-status" in out
    assert code in (0, 1)  # ready or not: a degraded device still counts as answering
    assert await asyncio.to_thread(main, ["status", "-c", str(path)]) == 1  # the gateway is gone
    assert "no gateway answers at http://127.0.0.1:" in capsys.readouterr().err


async def test_a_range_check_failure_makes_the_device_degraded(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Health judges the samples after the pipeline's checks: a value the device answers with, but that
    is outside the point's range (swapped bytes, a wrong scale), is a bad point too."""
    import tomli_w

    caplog.set_level(logging.INFO, "edgegw.runner")
    async with SimulatedPlc(tick_s=0, seed=3, unit_id=1) as plc:
        path = tmp_path / "gateway.toml"
        path.write_text(tomli_w.dumps({
            "gateway": {"id": "gw-range", "site": "baotou-mine-01", "enterprise_prefix": "88.608.5288"},
            "devices": [{"type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "port": plc.port,
                         "poll_interval_ms": 100,
                         "points": [{"name": "seq", "table": "input_register", "address": 0, "data_type": "uint32"},
                                    {"name": "wind", "table": "input_register", "address": 6, "scale": 0.01,
                                     "unit": "m/s", "min": -2.0, "max": -1.0}]}],
            "buffer": {"path": str(tmp_path / "buffer.db")},
            "uplink": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": "gw-range"},
        }))
        gw = Gateway(load(str(path)))
        async with running(gw.run()):
            health = gw.runners[0].health
            await eventually(lambda: health.state == "degraded", what="degraded by the range check")
            assert (health.reason, health.bad_points, health.points) == ("out_of_range", 1, 2)
    assert "Device gas-sub-01 degraded: 1 of 2 points bad: out_of_range" in caplog.messages
