"""The central ingest role: MQTT subscriber -> decode -> InfluxDB.

A message is acknowledged (PUBACK) only after its points are written to InfluxDB, so a crash of
this process loses nothing: the broker redelivers what was not acknowledged (persistent session,
fixed client id).  With MQTT 5 several processes share the load through a shared subscription
(``$share/<group>/...``).  Alarm events (``<prefix>/<site>/<gateway>/alarm``, JSON) are stored
in their own measurement (``influx.alarm_measurement``, default ``alarm``) with the same
write-then-acknowledge rule.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from gateway.alarms import alarm_line, decode_alarm
from gateway.codec import Batch, decode
from gateway.config import IngestSection
from gateway.errors import CodecError, RejectedError, RetryableError
from gateway.sinks.influx import LineWriter, make_writer, to_line
from gateway.sinks.mqtt import MqttClient

__all__ = ["Ingest", "IngestStats"]

log = logging.getLogger("edgegw.ingest")


@dataclass(slots=True)
class IngestStats:
    messages: int = 0
    points: int = 0
    written_points: int = 0
    undecodable: int = 0
    alarms: int = 0
    rejected_points: int = 0
    write_retries: int = 0
    connected: bool = False


class Ingest:
    def __init__(
        self,
        cfg: IngestSection,
        writer: LineWriter | None = None,
        observer: Callable[[Batch], None] | None = None,
        alarm_observer: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """``observer`` sees each decoded batch, ``alarm_observer`` each decoded alarm event (the
        demo shows them; both are called before the write is confirmed)."""
        self.cfg = cfg
        self.writer = writer or make_writer(cfg.influx)
        self.observer = observer
        self.alarm_observer = alarm_observer
        self.stats = IngestStats()
        self.client_id = cfg.mqtt.client_id or f"edgegw-ingest-{socket.gethostname()}"
        share = f"$share/{cfg.share_group}/" if cfg.share_group and cfg.mqtt.protocol == "5" else ""
        self.topic_filter = f"{share}{cfg.mqtt.topic_prefix}/+/+/data"
        self.alarm_filter = f"{share}{cfg.mqtt.topic_prefix}/+/+/alarm"
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        backoff = 0.2
        while True:
            client = MqttClient(
                self.cfg.mqtt, self.client_id, manual_ack=True, max_queued_incoming=1000
            )
            try:
                async with client:
                    await client.subscribe(self.topic_filter, qos=1)
                    await client.subscribe(self.alarm_filter, qos=1)
                    self.stats.connected = True
                    self.subscribed.set()
                    log.info("Ingest subscribed to %s and %s.", self.topic_filter, self.alarm_filter)
                    backoff = 0.2
                    await self._consume(client)
            except aiomqtt.MqttError as err:
                if self.stats.connected:
                    log.warning("Ingest lost the broker: %s", err)
                self.stats.connected = False
                self.subscribed.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _consume(self, client: MqttClient) -> None:
        it = client.messages
        pending: list[aiomqtt.Message] = []
        lines: list[str] = []
        deadline: float | None = None
        linger = self.cfg.linger_ms / 1000
        # The wait for the next message is never cancelled by the linger timeout: aiomqtt's
        # iterator loses a message that was dequeued just as its wait was cancelled, and an
        # unacknowledged message is not redelivered before the next reconnect (it was seen: a
        # batch or an alarm event stuck at the broker).  One pending task, reused across timeouts.
        nxt: asyncio.Future[aiomqtt.Message] | None = None
        try:
            while True:
                if nxt is None:
                    nxt = asyncio.ensure_future(anext(it))
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait({nxt}, timeout=timeout)
                if not done:
                    await self._commit(client, pending, lines)
                    pending, lines, deadline = [], [], None
                    continue
                msg = nxt.result()
                nxt = None
                self._take(msg, pending, lines)
                if deadline is None:
                    deadline = time.monotonic() + linger
                if len(lines) >= self.cfg.batch_max_points:
                    await self._commit(client, pending, lines)
                    pending, lines, deadline = [], [], None
        finally:
            if nxt is not None:
                nxt.cancel()

    def _take(self, msg: aiomqtt.Message, pending: list[aiomqtt.Message], lines: list[str]) -> None:
        """Decode one message into line protocol; it is acknowledged only by :meth:`_commit`."""
        self.stats.messages += 1
        pending.append(msg)
        payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
        if msg.topic.value.endswith("/alarm"):
            try:
                doc = decode_alarm(payload)
                lines.append(alarm_line(doc, self.cfg.influx.alarm_measurement))
                self.stats.alarms += 1
                if self.alarm_observer is not None:
                    self.alarm_observer(doc)
            except CodecError as err:
                self.stats.undecodable += 1
                log.error("Dropped an undecodable alarm on %s: %s", msg.topic.value, err)
            return
        try:
            batch = decode(payload)
        except CodecError as err:
            self.stats.undecodable += 1
            log.error("Dropped an undecodable message on %s: %s", msg.topic.value, err)
            return
        self.stats.points += len(batch.points)
        m = self.cfg.influx.measurement
        lines.extend(to_line(p, m, batch.site) for p in batch.points)
        if self.observer is not None:
            self.observer(batch)

    async def _commit(self, client: MqttClient, pending: list[aiomqtt.Message], lines: list[str]) -> None:
        """Write, then acknowledge.  Retry transient failures without acknowledging anything."""
        backoff = 0.2
        while True:
            try:
                await self.writer.write(lines)
                self.stats.written_points += len(lines)
                break
            except RetryableError as err:
                self.stats.write_retries += 1
                if self.stats.write_retries == 1 or backoff >= 5:
                    log.warning("InfluxDB write failed, retrying: %s", err)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            except RejectedError as err:
                self.stats.rejected_points += len(lines)
                log.error("InfluxDB refused %d points; they are dropped: %s", len(lines), err)
                break
        for msg in pending:
            client.ack(msg.mid, msg.qos)
