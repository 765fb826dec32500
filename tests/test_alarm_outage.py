"""Alarm events raised while the broker is down are kept and published when it returns, in order."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_stubs.gas_substation import GasSubstation, ch4_excursion, point_config
from gateway.app import Gateway
from gateway.config import parse
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto
from tests.conftest import eventually
from tests.test_e2e import running, step


def watcher(port: int) -> aiomqtt.Client:
    """A subscriber with a persistent session: what the broker queues for it survives the restart."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 600
    return aiomqtt.Client("127.0.0.1", port, identifier="outage-watch", protocol=aiomqtt.ProtocolVersion.V5,
                          clean_start=False, properties=props)


@pytest.mark.integration
async def test_alarms_raised_during_a_broker_outage_are_delivered_after_it(tmp_path: Path) -> None:
    broker = Mosquitto(workdir=Path(tempfile.mkdtemp(prefix="edgegw-alarm-outage-")))
    broker.start()
    points = [dict(p, **({"class": "ch4"} if p["name"] == "ch4" else {})) for p in point_config()]
    try:
        async with SimulatedPlc(tick_s=0, stub=GasSubstation(3, ch4_excursion(1))) as plc:
            cfg = parse({
                "gateway": {"id": "gw-out", "site": "ordos-mine-02", "enterprise_prefix": "88.608.5288"},
                "devices": [{"type": "modbus_tcp", "name": "gas-sub-07", "host": "127.0.0.1", "port": plc.port,
                             "poll_interval_ms": 50, "points": points}],
                "buffer": {"path": str(tmp_path / "buffer.db"), "linger_ms": 20},
                "uplink": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "outage", "timeout_s": 3,
                           "keepalive_s": 5, "client_id": "gw-outage"},
            })
            gw = Gateway(cfg)
            alarms = gw.alarms
            assert alarms is not None
            async with watcher(broker.port) as sub:
                await sub.subscribe("outage/+/+/alarm", qos=1)
            async with running(gw.run()):
                await eventually(lambda: alarms.stats.connected, what="the alarm publisher to connect")
                broker.stop()
                await eventually(lambda: not alarms.stats.connected, what="the publisher to notice")
                await step(gw, plc, range(1, 8))  # through the excursion: high, power_off, back to normal
                assert alarms.stats.published == 0 and alarms.pending == 3
                broker.start()
                received: list[dict[str, object]] = []
                async with watcher(broker.port) as sub:
                    # the session (and its subscription) survived the restart: nothing can be missed
                    async with asyncio.timeout(30):
                        async for msg in sub.messages:
                            assert isinstance(msg.payload, bytes)
                            received.append(json.loads(msg.payload))
                            if len(received) == 3:
                                break
                assert [m["level"] for m in received] == ["high", "power_off", "normal"]
                # the subscriber may see the last event before the gateway has its PUBACK
                await eventually(lambda: alarms.stats.published == 3 and alarms.pending == 0,
                                 what="the PUBACKs of the events (then deleted from the alarm buffer)")
                assert alarms.stats.dropped == 0
    finally:
        broker.stop()
