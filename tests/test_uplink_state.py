"""The retained state message after a clean stop: the broker sends the last will (offline) only
when a connection breaks, so a gateway stopped by SIGTERM must say offline itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.buffer import SqliteBuffer
from gateway.config import MqttConfig, UplinkConfig
from gateway.forwarder import Forwarder
from gateway.sinks.mqtt import MqttClient, MqttUplink
from gateway.watch import Watch
from hil.services import Service
from tests.clocks import ManualClock, S
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
    uplink = MqttUplink(UplinkConfig(port=mosquitto.port, no_subscribers="accept"), "s1", "gw-clean-stop")
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


async def test_the_state_message_carries_the_overload_facts(mosquitto: Service, tmp_path: Path) -> None:
    """The facts the watch logs go to the retained state message too, and leave it when they stop."""
    clock = ManualClock(1_800_000_000 * S)
    buf = SqliteBuffer(tmp_path / "buf.db", max_bytes=10_000, when_full="drop_oldest", clock=clock)
    watch = Watch(buf, clock=clock)
    for _ in range(13):
        buf.put(b"x" * 1000, 10)
    watch.check()  # 3 batches dropped, 100 % full
    wake = asyncio.Event()
    uplink = MqttUplink(UplinkConfig(port=mosquitto.port, no_subscribers="accept"), "s1", "gw-overload-state")
    # the forwarder delivers the batches too: the fill and the drop condition then clear
    fwd = Forwarder(buf, uplink, wake, max_inflight=1, backoff_max_s=0.5,
                    state_facts=lambda: (watch.version, watch.facts()))
    async with MqttClient(MqttConfig(port=mosquitto.port), "state-watch-overload") as sub:
        await sub.subscribe(uplink.state_topic, qos=1)
        states = aiter(sub.messages)

        async def next_state(pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            async with asyncio.timeout(20):
                while True:
                    msg = await anext(states)
                    assert isinstance(msg.payload, bytes)
                    state: dict[str, Any] = json.loads(msg.payload)
                    if pred(state):
                        return state

        task = asyncio.create_task(fwd.run())
        try:
            state = await next_state(lambda s: "buffer_drop_oldest" in s.get("overload", {}))
            overload = state["overload"]
            assert overload["buffer_drop_oldest"]["points"] == buf.counters()["dropped_oldest_points"] == 30
            assert overload["buffer_fill_level_pct"] == 90
            await eventually(lambda: buf.pending_batches == 0, what="drained")
            clock.advance(11 * S)
            watch.check()  # no drop for 11 s: stopped; the fill is back at 0
            wake.set()
            state = await next_state(lambda s: "overload" not in s)
            assert state["state"] == "online"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    buf.close()
