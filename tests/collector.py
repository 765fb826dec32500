"""A plain MQTT subscriber for fault tests: collects every payload published on a topic filter.

It is the receiving end the oracle compares against: real mosquitto in between, QoS 1, and a
session that stays connected for the whole test so nothing is lost on this side.  A filter ending
in ``/data`` brings the gateways' wire format v2 catalogs too (``.../catalog/+``): they are learnt
into this process's catalogs (``gateway.codec.KNOWN_CATALOGS``), so ``decode`` reads the batches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiomqtt

from gateway.codec import KNOWN_CATALOGS, is_catalog_topic

__all__ = ["collect"]


@contextlib.asynccontextmanager
async def collect(port: int, topic_filter: str, client_id: str) -> AsyncIterator[list[bytes]]:
    received: list[bytes] = []
    ready = asyncio.Event()

    async def run() -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier=client_id,
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            if topic_filter.endswith("/data"):
                await client.subscribe(topic_filter[: -len("data")] + "catalog/+", qos=1)
            await client.subscribe(topic_filter, qos=1)
            ready.set()
            async for msg in client.messages:
                if isinstance(msg.payload, bytes | bytearray):
                    if is_catalog_topic(msg.topic.value):
                        if msg.payload:
                            KNOWN_CATALOGS.learn(bytes(msg.payload))
                        continue
                    received.append(bytes(msg.payload))

    task = asyncio.create_task(run())
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        yield received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
