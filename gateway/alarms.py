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
import logging
from dataclasses import dataclass

from gateway.buffer.sqlite import SqliteBuffer
from gateway.catalog import Catalog
from gateway.codec import encode_alarm
from gateway.config import MqttConfig
from gateway.forwarder import Forwarder
from gateway.sinks.mqtt import MqttUplink
from pipelines.alarms import AlarmEvent

__all__ = ["AlarmPublisher", "AlarmStats"]

log = logging.getLogger("edgegw.alarms")
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
