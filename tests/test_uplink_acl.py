"""A broker that refuses publishes (mosquitto ACL denial) must leave every batch buffered.

With MQTT 5 mosquitto answers a denied QoS 1 publish with PUBACK reason 0x87 (not authorised);
aiomqtt would call that a success.  This runs the real Forwarder against a real mosquitto whose
ACL forbids the data topic and checks that the refusals are counted and nothing is deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.buffer import SqliteBuffer
from gateway.config import MqttConfig
from gateway.core.errors import RejectedError
from gateway.forwarder import Forwarder
from gateway.sinks.mqtt import MqttClient, MqttUplink
from hil.services import Mosquitto
from tests.conftest import _start, eventually

__all__: list[str] = []


@pytest.fixture
def acl_mosquitto(services_dir: Path) -> Iterator[Mosquitto]:
    work = services_dir / "mosquitto-acl"
    work.mkdir(exist_ok=True)
    acl = work / "acl"
    # anonymous clients may publish their state but not data
    acl.write_text("topic write edgegw/+/+/state\ntopic read #\n")
    acl.chmod(0o644)
    svc = Mosquitto(workdir=work, extra_config=f"acl_file {acl}\n")
    _start(svc)
    yield svc
    svc.stop()


async def test_publish_checked_reports_acl_denial(acl_mosquitto: Mosquitto) -> None:
    cfg = MqttConfig(port=acl_mosquitto.port)
    async with MqttClient(cfg, "acl-probe") as client:
        with pytest.raises(RejectedError, match="0x87"):
            await client.publish_checked("edgegw/s1/g1/data", b"x", timeout=5.0)
        assert await client.publish_checked("edgegw/s1/g1/state", b"ok", timeout=5.0) < 0x80


async def test_refused_batches_stay_buffered(acl_mosquitto: Mosquitto, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "edgegw.forwarder")
    buf = SqliteBuffer(tmp_path / "buf.db")
    for i in range(5):
        assert buf.put(f"batch-{i}".encode(), 10)
    uplink = MqttUplink(MqttConfig(port=acl_mosquitto.port), "s1", "g1")
    fwd = Forwarder(buf, uplink, asyncio.Event(), max_inflight=4, backoff_max_s=0.5)
    task = asyncio.create_task(fwd.run())
    try:
        await eventually(lambda: fwd.stats.rejected_batches >= 10, what="refusals counted")
        # said once, not on every retry (again once a minute while it lasts)
        said = [r.getMessage() for r in caplog.records if "efuse" in r.getMessage()]
        assert len(said) == 1 and said[0].startswith("Broker refused ") and "0x87" in said[0], said
        # the refusal raised an alarm in the retained state message central monitoring watches
        async with MqttClient(MqttConfig(port=acl_mosquitto.port), "acl-watch") as watch:
            await watch.subscribe(uplink.state_topic, qos=1)
            async with asyncio.timeout(10):
                msg = await anext(aiter(watch.messages))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert isinstance(msg.payload, bytes)
    state = json.loads(msg.payload)
    assert state["state"] == "online" and state["alarm"] == "publish_refused"
    assert "0x87" in state["reason"] and state["rejected_batches"] >= 1
    # nothing left the buffer and nothing was counted delivered
    assert buf.pending_batches == 5
    assert buf.counters()["delivered_points"] == 0
    assert "0x87" in fwd.stats.last_error
    buf.close()
