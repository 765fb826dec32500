"""Several writes in flight, acknowledgements in order: on a real mosquitto, with the ingest writing
through its file writer (the demo's store) held back for one body, as a slow store holds one request
while the next ones are answered.

MQTT wants PUBACKs in the order of the PUBLISHes, and the guarantee wants no message acknowledged
before it is written: the later writes may finish first, their messages wait for the held one.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.codec import points_payload
from gateway.config import IngestSection, MqttConfig
from gateway.core.point import Point
from gateway.ingest import Ingest
from gateway.sinks.influx import make_writer
from gateway.sinks.mqtt import MqttClient
from hil.services import Mosquitto
from tests.conftest import eventually
from tests.test_e2e import running

BASE_TS = 1_764_600_000_000_000_000


class HoldFirstWrite:
    """A real writer whose first write waits for ``release`` (the others go straight through)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.started = 0
        self.finished: list[int] = []

    async def write(self, body: bytes) -> None:
        self.started += 1
        k = self.started
        if k == 1:
            await self.release.wait()
        await self.inner.write(body)
        self.finished.append(k)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.integration
async def test_later_writes_finish_first_their_messages_are_acknowledged_after_the_held_one(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"order{os.getpid()}"
    cfg = IngestSection.model_validate({
        "mqtt": {"port": mosquitto.port, "topic_prefix": prefix, "client_id": f"{prefix}-ingest"},
        "influx": {"api": "file", "path": str(tmp_path / "rows.lp")},
        "batch_max_points": 10, "linger_ms": 0, "writes_in_flight": 3,
        "dead_letter_path": str(tmp_path / "dl.db"),
    })
    writer = HoldFirstWrite(make_writer(cfg.influx))
    acked: list[tuple[int, int]] = []  # (mid, writes finished when it was acknowledged)
    real_ack = MqttClient.ack

    def ack(self: MqttClient, mid: int, qos: int) -> None:
        acked.append((mid, len(writer.finished)))
        real_ack(self, mid, qos)

    monkeypatch.setattr(MqttClient, "ack", ack)
    ingest = Ingest(cfg, writer=writer)
    async with running(ingest.run()):
        await asyncio.wait_for(ingest.subscribed.wait(), 20)
        async with MqttClient(MqttConfig(port=mosquitto.port, timeout_s=10), f"{prefix}-pub") as pub:
            for seq in range(3):  # one message per body (batch_max_points = its 10 points)
                pts = [Point(f"d.p{i}", f"88.1/x{i}", BASE_TS + seq * 100 + i, float(seq), device="d")
                       for i in range(10)]
                await pub.publish_checked(f"{prefix}/s/g/data", points_payload("g", "s", pts), timeout=10)
        # the second and third bodies are written while the first is held: three writes in flight
        await eventually(lambda: writer.finished == [2, 3], timeout=20, what="the later writes to finish")
        await asyncio.sleep(0.3)
        assert acked == []  # nothing acknowledged while the first message is not written
        writer.release.set()
        await eventually(lambda: len(acked) == 3, timeout=20, what="three acknowledgements")
    ingest.close()
    mids = [m for m, _ in acked]
    assert mids == sorted(mids)  # in the order the broker sent them (mosquitto numbers them in turn)
    assert all(done == 3 for _, done in acked)  # each only after every write before it had finished
    assert len((tmp_path / "rows.lp").read_text().splitlines()) == 30
