"""Alarm events: their wire form, their own MQTT topic, and their InfluxDB line.

Events are few and matter to people, so the payload is JSON (any SCADA or phone app can read
it) on ``<prefix>/<site>/<gateway>/alarm``, one event per message, carrying the point's identifier
code, device code and grade (the topic carries config keys only, never a code).  The publisher
keeps its own MQTT connection (client id ``<uplink client id>-alarm``) so that a backlog of telemetry
never delays an alarm; its queue is bounded in memory (oldest dropped first, counted).  The
telemetry of the same points still goes through the durable buffer.  The gateway only reports:
nothing here ever writes to a device.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import aiomqtt

from gateway.catalog import Catalog
from gateway.config import MqttConfig
from gateway.errors import CodecError, RejectedError, RetryableError
from gateway.sinks.influx import esc_key
from gateway.sinks.mqtt import MqttClient, topic
from pipelines.alarms import AlarmEvent

__all__ = ["ALARM_SCHEMA_VERSION", "AlarmPublisher", "AlarmStats", "alarm_line", "decode_alarm", "encode_alarm"]

log = logging.getLogger("edgegw.alarms")
ALARM_SCHEMA_VERSION = 1
_TAG_FIELDS = ("code", "device", "device_code", "point", "site", "gw", "class", "data_grade", "data_domain", "unit")


def encode_alarm(catalog: Catalog, ev: AlarmEvent) -> bytes:
    info = catalog.points[ev.index]
    doc = {
        "v": ALARM_SCHEMA_VERSION,
        "kind": "alarm",
        "gw": catalog.gateway_id,
        "site": catalog.site,
        "point": info.key,
        "code": info.code,
        "device": info.device,
        "device_code": info.device_code,
        "class": info.point_class,
        "data_grade": info.data_grade,
        "data_domain": info.data_domain,
        "unit": info.unit,
        "ts_ns": ev.ts_ns,
        "level": ev.level.label,
        "previous": ev.previous.label,
        "active": ev.active,
        "value": ev.value,
        "threshold": ev.threshold,
        "tags": dict(info.tags),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def decode_alarm(payload: bytes) -> dict[str, Any]:
    """Validate an alarm message; anything malformed raises :class:`CodecError`."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise CodecError(f"alarm is not JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "alarm":
        raise CodecError("not an alarm event")
    if doc.get("v") != ALARM_SCHEMA_VERSION:
        raise CodecError(f"unsupported alarm format version {doc.get('v')!r}")
    for k in (*_TAG_FIELDS, "level", "previous"):
        if not isinstance(doc.get(k), str):
            raise CodecError(f"alarm field {k!r} missing or not a string")
    if not isinstance(doc.get("ts_ns"), int) or not isinstance(doc.get("active"), bool):
        raise CodecError("alarm ts_ns / active have wrong types")
    for k in ("value", "threshold"):
        v = doc.get(k)
        if v is not None and not isinstance(v, int | float | bool):
            raise CodecError(f"alarm {k} is not a number")
        if isinstance(v, float) and not math.isfinite(v):
            raise CodecError(f"alarm {k} is not finite")
    tags = doc.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise CodecError("alarm tags must map strings to strings")
    return doc


def alarm_line(doc: dict[str, Any], measurement: str = "alarm") -> str:
    """Line protocol of one decoded alarm: codes, grade and level as tags; value and threshold as floats."""
    tags: dict[str, str] = dict(doc.get("tags", {}))
    tags.update({k: doc[k] for k in _TAG_FIELDS})
    tags["gateway"] = tags.pop("gw")
    tags["level"] = doc["level"]
    tag_part = ",".join(f"{esc_key(k)}={esc_key(v)}" for k, v in sorted(tags.items()) if v)
    fields = [f'previous="{doc["previous"]}"', f"active={'true' if doc['active'] else 'false'}"]
    for k in ("value", "threshold"):
        v = doc.get(k)
        if v is not None:
            fields.append(f"{k}={float(v)!r}")
    return f"{esc_key(measurement)},{tag_part} {','.join(fields)} {doc['ts_ns']}"


@dataclass(slots=True)
class AlarmStats:
    queued: int = 0
    published: int = 0
    dropped: int = 0  # queue full (oldest dropped) or refused by the broker
    kept_on_site: int = 0
    connected: bool = False


class AlarmPublisher:
    def __init__(
        self, cfg: MqttConfig, catalog: Catalog, *, forwarded: frozenset[int] | None = None, max_queued: int = 10_000
    ) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.client_id = (cfg.client_id or f"edgegw-{catalog.gateway_id}") + "-alarm"
        self.topic = topic(cfg, catalog.site, catalog.gateway_id, "alarm")
        self._forwarded = forwarded
        self._queue: collections.deque[bytes] = collections.deque(maxlen=max_queued)
        self._wake = asyncio.Event()
        self.stats = AlarmStats()

    def submit(self, events: list[AlarmEvent]) -> None:
        for ev in events:
            level = logging.WARNING if ev.active else logging.INFO
            info = self.catalog.points[ev.index]
            log.log(level, "Alarm %s -> %s on %s (%s): value %s, threshold %s.", ev.previous.label,
                    ev.level.label, info.key, info.code, ev.value, ev.threshold)
            if self._forwarded is not None and ev.index not in self._forwarded:
                self.stats.kept_on_site += 1
                continue
            if len(self._queue) == self._queue.maxlen:
                self.stats.dropped += 1
            self._queue.append(encode_alarm(self.catalog, ev))
            self.stats.queued += 1
        if events:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with MqttClient(self.cfg, self.client_id) as client:
                    self.stats.connected = True
                    backoff = 0.2
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._pump(client))
                        tg.create_task(self._until_disconnected(client))
            except* (aiomqtt.MqttError, RetryableError) as group:
                if self.stats.connected:
                    log.warning("Alarm publisher lost the broker: %s; %d alarm(s) queued.",
                                group.exceptions[0], len(self._queue))
                self.stats.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    @staticmethod
    async def _until_disconnected(client: MqttClient) -> None:
        """Ends with MqttError when the connection drops, even while no alarm is being sent."""
        async for _ in client.messages:  # nothing is subscribed: this only waits
            pass
        raise RetryableError("alarm connection closed")

    async def _pump(self, client: MqttClient) -> None:
        while True:
            self._wake.clear()
            while self._queue:
                payload = self._queue[0]
                try:
                    await client.publish_checked(self.topic, payload, timeout=self.cfg.timeout_s)
                except RejectedError as err:
                    self.stats.dropped += 1
                    log.error("Broker refused an alarm event; it is dropped: %s", err)
                else:
                    self.stats.published += 1
                if self._queue and self._queue[0] is payload:
                    self._queue.popleft()
            await self._wake.wait()
