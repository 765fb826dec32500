"""Alarm events: their wire form, their own MQTT topic, and their InfluxDB line.

Events are few and matter to people, so the payload is JSON (any SCADA or phone app can read
it) on ``<prefix>/<site>/<gateway>/alarm``, one event per message, carrying the point's identifier
code, device code and grade (the topic carries config keys only, never a code).  The publisher
keeps its own MQTT connection (client id ``<uplink client id>-alarm``, no birth / will) so that a
backlog of telemetry never delays an alarm, and its own durable buffer (``<stem>-alarms.db`` next
to ``[buffer].path``): an event is committed before :meth:`AlarmPublisher.submit` returns and
deleted only after a success PUBACK, as telemetry.  The gateway only reports:
nothing here ever writes to a device.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from gateway.buffer.sqlite import SqliteBuffer
from gateway.catalog import Catalog
from gateway.config import MqttConfig
from gateway.errors import CodecError
from gateway.forwarder import Forwarder
from gateway.sinks.mqtt import MqttUplink
from pipelines.alarms import AlarmEvent

__all__ = ["ALARM_SCHEMA_VERSION", "AlarmPublisher", "AlarmStats", "decode_alarm", "encode_alarm"]

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
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
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


def _short(v: float | int | bool | None) -> str:
    return f"{v:.7g}" if isinstance(v, float) else str(v)


@dataclass(slots=True)
class AlarmStats:
    queued: int = 0  # committed to the alarm buffer
    published: int = 0  # confirmed by PUBACK (then deleted from the buffer)
    dropped: int = 0  # alarm buffer full (oldest dropped) or expired by alarm_max_age_s, counted
    rejected: int = 0  # refused by the broker: kept in the buffer and retried
    kept_on_site: int = 0
    connected: bool = False


class AlarmPublisher:
    """Alarm events through their own durable buffer and their own :class:`Forwarder`.

    :meth:`submit` commits each event (one row, one point) before it returns, with the telemetry
    buffer's durability, so an event survives kill -9 and power loss like telemetry; the forwarder
    deletes it only after a success PUBACK.  One event in flight at a time keeps them in order.
    """

    def __init__(
        self, cfg: MqttConfig, catalog: Catalog, buffer: SqliteBuffer, *, forwarded: frozenset[int] | None = None
    ) -> None:
        self.catalog = catalog
        self.buffer = buffer
        self.uplink = MqttUplink(cfg, catalog.site, catalog.gateway_id, "alarm")
        self.client_id = self.uplink.client_id
        self.topic = self.uplink.data_topic
        self.wake = asyncio.Event()
        # strict order (window 1, backlog before live) and the JSON exactly as encoded
        self.forwarder = Forwarder(buffer, self.uplink, self.wake, max_inflight=1, backlog_share=1.0,
                                   mark_backlog=False)
        self._forwarded = forwarded
        self._kept_on_site = 0

    def set_forwarded(self, forwarded: frozenset[int] | None) -> None:
        """A config reload: the point indices whose events may leave the site."""
        self._forwarded = forwarded

    def submit(self, events: list[AlarmEvent]) -> None:
        for ev in events:
            level = logging.WARNING if ev.active else logging.INFO
            info = self.catalog.points[ev.index]
            # 7 significant digits: a float32 register reads 1.2, not 1.2000000476837158 (the event keeps it exact)
            unit = f" {info.unit}" if info.unit else ""
            log.log(level, "Alarm %s -> %s on %s (%s): value %s%s, threshold %s%s.", ev.previous.label,
                    ev.level.label, info.key, info.code, _short(ev.value), unit, _short(ev.threshold), unit)
            if self._forwarded is not None and ev.index not in self._forwarded:
                self._kept_on_site += 1
                continue
            if not self.buffer.put(encode_alarm(self.catalog, ev), 1):
                log.error("Alarm buffer %s refused an event (counted in dropped_newest_*).", self.buffer.path)
        if events:
            self.wake.set()

    @property
    def stats(self) -> AlarmStats:
        c = self.buffer.counters()
        f = self.forwarder.stats
        return AlarmStats(
            queued=c["accepted_batches"],
            published=f.published_batches,
            dropped=c["dropped_oldest_batches"] + c["dropped_newest_batches"] + c["expired_batches"],
            rejected=f.rejected_batches,
            kept_on_site=self._kept_on_site,
            connected=f.connected,
        )

    @property
    def pending(self) -> int:
        return self.buffer.pending_batches

    async def run(self) -> None:
        await self.forwarder.run()
