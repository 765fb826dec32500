"""Alarm events: their wire form, their own MQTT topic, and their InfluxDB line.

Events are few and matter to people, so the payload is JSON (any SCADA or phone app can read
it) on ``<prefix>/<site>/<gateway>/alarm``, one event per message, carrying the point's identifier
code, device code and grade (the topic carries config keys only, never a code).  The publisher
keeps its own MQTT connection (client id ``<uplink client id>-alarm``, no birth / will) so that a
backlog of telemetry never delays an alarm, and its own durable buffer (``<stem>-alarms.db`` next
to ``[buffer].path``): :meth:`AlarmPublisher.submit` hands each event to that buffer's writer thread
(committed there in order, with the buffer's durability, before the forwarder can see it) and the
forwarder deletes it only after a success PUBACK, as telemetry.  The gateway only reports:
nothing here ever writes to a device.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gateway.buffer.sqlite import SqliteBuffer
from gateway.buffer.writer import BufferWriter
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

    :meth:`submit` hands each event (one row, one point) to the alarm buffer's writer thread, which
    commits it with the telemetry buffer's durability (so an event survives kill -9 and power loss
    like telemetry once committed, and the event loop never waits for the sync); the forwarder sees
    it only once committed and deletes it only after a success PUBACK.  One event in flight at a time
    keeps them in order.  Outside an event loop (tools, tests) the event is committed before
    :meth:`submit` returns.
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
        self.writer = BufferWriter.of(buffer)
        self._commits: set[asyncio.Future[list[bool]]] = set()  # handed to the writer, not yet committed
        self._failure: BaseException | None = None  # a disk error of the alarm buffer: stops the gateway
        self._failed = asyncio.Event()

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
            self._put(encode_alarm(self.catalog, ev))
        if events:
            self.wake.set()

    def _put(self, payload: bytes) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no event loop: commit here and now
            self._refused([self.buffer.put(payload, 1)])
            return
        fut = asyncio.wrap_future(self.writer.submit_put_many([(payload, 1)]))
        self._commits.add(fut)
        fut.add_done_callback(self._committed)

    def _committed(self, fut: asyncio.Future[list[bool]]) -> None:
        """On the event loop, once the writer thread committed (or failed to commit) an event."""
        self._commits.discard(fut)
        if fut.cancelled():
            return
        err = fut.exception()
        if err is not None:
            self._failure = err
            self._failed.set()
            return
        self._refused(fut.result())
        self.wake.set()  # committed: the forwarder may publish it

    def _refused(self, accepted: list[bool]) -> None:
        if not all(accepted):
            log.error("Alarm buffer %s refused an event (counted in dropped_newest_*).", self.buffer.path)

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
        """The forwarder, until cancelled; a disk error committing an event ends it (the gateway stops)."""
        fwd = asyncio.create_task(self.forwarder.run(), name="alarm-forwarder")
        failed = asyncio.create_task(self._failed.wait(), name="alarm-commit-failure")
        try:
            await asyncio.wait({fwd, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            fwd.cancel()
            failed.cancel()
            await asyncio.gather(fwd, failed, return_exceptions=True)
        if self._failure is not None:
            raise self._failure
        if not fwd.cancelled() and fwd.exception() is not None:
            raise fwd.exception()  # type: ignore[misc]
        raise RuntimeError("the alarm forwarder stopped unexpectedly")
