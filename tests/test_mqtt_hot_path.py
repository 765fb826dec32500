"""The uplink's per-batch MQTT work (gateway.sinks.mqtt).

The PUBACK of every batch skips paho's per-packet ReasonCode / Properties objects: the callbacks must
see exactly what paho's own decoding gives them, for every form of PUBACK, and anything the fast path
does not cover must still go through paho (its errors included).  A publish on the event loop's thread
is written at once; what the socket does not take is written when it becomes writable."""

from __future__ import annotations

import asyncio
import types
import uuid
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.config import MqttConfig
from gateway.sinks.mqtt import MqttClient, _handle_pubackcomp
from hil.services import Mosquitto

__all__: list[str] = []

_PACKETS = [
    b"\x00\x01",  # no reason code: success
    b"\x00\x01\x00",  # success
    b"\x00\x01\x10",  # no matching subscribers
    b"\x00\x01\x10\x00",  # ... with an empty property length (what mosquitto sends)
    b"\x00\x01\x87\x00",  # not authorised
    b"\x00\x01\x97",  # quota exceeded
    b"\x00\x01\x00\x05\x1f\x00\x02ok",  # with a reason string property: paho's own path
]


def _client(fast: bool) -> tuple[paho.Client, list[tuple[Any, ...]]]:
    seen: list[tuple[Any, ...]] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)

    def on_publish(_c: paho.Client, _u: Any, mid: int, code: Any, props: Any) -> None:
        seen.append((mid, code.value, code.getName(), code.packetType, props.json()))

    client.on_publish = on_publish
    if fast:
        client._handle_pubackcomp = types.MethodType(_handle_pubackcomp, client)  # type: ignore[method-assign]
    return client, seen


@pytest.mark.parametrize("packet", _PACKETS)
@pytest.mark.parametrize("known_mid", [True, False])
def test_fast_path_calls_back_as_paho_does(packet: bytes, known_mid: bool) -> None:
    results = []
    for fast in (False, True):
        client, seen = _client(fast)
        if known_mid:
            assert client.publish("t", b"x", 1).mid == 1  # not connected: kept for sending, awaiting its PUBACK
        client._in_packet["command"] = 0x40
        client._in_packet["packet"] = bytearray(packet)  # what paho reads into
        rc = client._packet_handle()
        results.append((rc, seen, sorted(client._out_messages), client._inflight_messages))
    assert results[0] == results[1]
    assert results[0][0] == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert len(results[0][1]) == (1 if known_mid else 0)


@pytest.mark.parametrize("packet", [b"\x00\x01\x05", b"\x00", b"\x00\x01\x00\x07"])
def test_what_paho_refuses_is_refused_the_same_way(packet: bytes) -> None:
    """An unknown reason code, a short packet, a property length past the end: paho's error, unchanged."""
    errors = []
    for fast in (False, True):
        client, seen = _client(fast)
        client.publish("t", b"x", 1)
        client._in_packet["command"] = 0x40
        client._in_packet["packet"] = bytearray(packet)  # what paho reads into
        with pytest.raises(Exception) as info:  # whatever paho raises: both must raise it
            client._packet_handle()
        errors.append((type(info.value), str(info.value), seen))
    assert errors[0] == errors[1]


async def test_publishes_are_confirmed_through_the_fast_path(mosquitto: Mosquitto) -> None:
    """Against a real broker: the client uses the fast path; a PUBACK 0x10 (nobody subscribed) and a plain
    one (after a subscription) are both reported with their codes."""
    cfg = MqttConfig(port=mosquitto.port)
    topic = f"puback-probe/{uuid.uuid4().hex}/data"
    async with MqttClient(cfg, f"puback-probe-{uuid.uuid4().hex[:8]}") as client:
        assert client._client._handle_pubackcomp.__func__ is _handle_pubackcomp  # type: ignore[attr-defined]
        alone = [await client.publish_checked(topic, b"x" * n, timeout=5.0) for n in (1, 100, 10_000)]
        async with MqttClient(cfg, f"puback-reader-{uuid.uuid4().hex[:8]}") as reader:
            await reader.subscribe(topic, qos=1)
            read = [await client.publish_checked(topic, b"y" * n, timeout=5.0) for n in (1, 10_000)]
    assert alone == [0x10, 0x10, 0x10]
    assert read == [0x00, 0x00]


async def test_a_publish_is_written_at_once_and_a_large_one_completes(mosquitto: Mosquitto) -> None:
    """No writer is left registered after a publish the socket took whole; a payload far larger than the
    socket's buffer (written in parts, the rest on writability) still arrives whole and is confirmed."""
    cfg = MqttConfig(port=mosquitto.port)
    topic = f"write-probe/{uuid.uuid4().hex}/data"
    async with MqttClient(cfg, f"write-reader-{uuid.uuid4().hex[:8]}") as reader:
        await reader.subscribe(topic, qos=1)
        async with MqttClient(cfg, f"write-probe-{uuid.uuid4().hex[:8]}") as client:
            fut = asyncio.ensure_future(client.publish_checked(topic, b"s" * 100, timeout=10.0))
            await asyncio.sleep(0)  # the publish ran up to its wait for the PUBACK
            assert not client._client._registered_write  # written whole, nothing waits for writability
            assert await fut == 0
            big = bytes(range(256)) * (32 << 12)  # 32 MiB
            assert await client.publish_checked(topic, big, timeout=30.0) == 0
        got = []
        async for message in reader.messages:
            got.append(message.payload)
            if len(got) == 2:
                break
    assert got[0] == b"s" * 100
    assert got[1] == big
