"""Moves batches from the buffer to the uplink; the only place sink errors become buffer outcomes.

Backlog and live data share the link.  At each (re)connect, every batch already in the buffer is
*backlog*: it was stored while the uplink was down (or had not caught up), is published with the
wire format's historical mark, oldest first.  Batches accepted after the connect are *live*.
While both exist, the slots of the in-flight window go to the backlog in the proportion
``backlog_share`` and to live data otherwise.  The backlog never holds more than its share of the
window (at least one slot), so a live batch always finds a free slot and queues behind a bounded
number of backlog bytes; live data may use every slot the backlog leaves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.buffer import Outcome, SqliteBuffer, Transaction
from gateway.buffer.writer import BufferWriter, outcome_on_loop
from gateway.codec import mark_historical
from gateway.core.errors import CodecError, RejectedError, RetryableError
from gateway.latency import Histogram
from gateway.sinks.mqtt import MqttUplink, UplinkConnection

__all__ = ["Forwarder", "ForwarderStats"]

log = logging.getLogger("edgegw.forwarder")
_REFUSED_EVERY_S = 60.0


@dataclass(slots=True)
class ForwarderStats:
    connected: bool = False
    published_batches: int = 0
    published_points: int = 0
    historical_batches: int = 0
    historical_points: int = 0
    rejected_batches: int = 0
    reconnects: int = 0
    no_subscriber_acks: int = 0
    last_error: str = ""
    publish_latency: Histogram = field(default_factory=Histogram)  # publish -> successful PUBACK, seconds
    refused_by_code: Counter[str] = field(default_factory=Counter)  # PUBACK reason code (0x87) -> refusals


class Forwarder:
    def __init__(
        self,
        buffer: SqliteBuffer,
        uplink: MqttUplink,
        wake: asyncio.Event,
        *,
        max_inflight: int,
        backoff_max_s: float = 30.0,
        backlog_share: float = 0.5,
        on_delivered: Callable[[bytes, bool], None] | None = None,
        mark_backlog: bool = True,
        state_facts: Callable[[], tuple[int, dict[str, object]]] | None = None,
        on_connect: Callable[[UplinkConnection, bool], Awaitable[None]] | None = None,
    ) -> None:
        """``on_delivered(payload, historical)`` is called for each batch confirmed by a PUBACK
        (benchmarks measure latency with it).  ``mark_backlog = False`` publishes backlog exactly
        as stored (alarm events keep their wire format).  ``state_facts()`` returns (version, facts):
        overload conditions (gateway.watch) the retained state message carries; it is published
        again whenever the version changes.  ``on_connect(conn, backlog)`` runs on each connection
        before any batch is published (the wire format v2 catalogs); ``backlog``: batches are buffered."""
        self.buffer = buffer
        # fetching and releasing batches run on the buffer's reader thread, deletes on its writer thread
        # (in order with the commits): never a sync on the event loop
        self.writer = BufferWriter.of(buffer)
        self.uplink = uplink
        self.wake = wake
        self.max_inflight = max_inflight
        self.backoff_max = backoff_max_s
        if not 0.0 <= backlog_share <= 1.0:
            raise ValueError("backlog_share must be within [0, 1]")
        self.backlog_share = backlog_share
        self.on_delivered = on_delivered
        self.mark_backlog = mark_backlog
        self.state_facts = state_facts
        self.on_connect = on_connect
        self.stats = ForwarderStats()
        # the refusal last said (reason, monotonic time, refused batches then): a refusal that lasts
        # is said again once a minute with the count, not on every retry
        self._refused_said: tuple[str, float, int] | None = None

    def _say_refused(self, n: int, reason: str) -> None:
        now, total = time.monotonic(), self.stats.rejected_batches
        said = self._refused_said
        extra = {"uplink": self.uplink.client_id, "reason": reason}
        if said is None or said[0] != reason:
            log.error("Broker refused %d batch(es): %s; they stay buffered.", n, reason, extra=extra)
        elif now - said[1] >= _REFUSED_EVERY_S:
            log.error("Broker still refuses batches (%d refusals in the last %.0f s): %s; they stay buffered.",
                      total - said[2], now - said[1], reason, extra=extra)
        else:
            return
        self._refused_said = (reason, now, total)

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with self.uplink.connect() as conn:
                    if not self.stats.connected:
                        host, port = self.uplink.server
                        log.info("Connected to broker %s:%s as %s.", host, port, self.uplink.client_id)
                    self.stats.connected = True
                    backoff = 0.2
                    if self.on_connect is not None:
                        await self.on_connect(conn, self.buffer.pending_batches > 0)
                    await self._pump(conn)
            except RetryableError as err:
                self.stats.last_error = str(err)
                if self.stats.connected:
                    log.warning("Uplink %s lost: %s; batches stay buffered.", self.uplink.client_id, err,
                                extra={"uplink": self.uplink.client_id, "reason": str(err)})
                elif self.stats.reconnects == 0:
                    log.warning("Uplink %s unavailable: %s; batches stay buffered.", self.uplink.client_id, err,
                                extra={"uplink": self.uplink.client_id, "reason": str(err)})
                self.stats.connected = False
                self.stats.reconnects += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)

    def _take(self, free: int, boundary: int, share: _Share, backlog_room: int) -> tuple[list[_Item], int, bool]:
        """Batches for ``free`` window slots: backlog (ids <= boundary, oldest first, at most
        ``backlog_room``) and live (later ids), split by the running backlog share; live data
        may use the slots the backlog leaves.  Returns the items, how many are backlog, and
        whether the backlog had fewer batches than asked for (none left outside the window).
        While a backlog exists, every slot live data takes counts as contested, also when the
        backlog took none this time (its room in flight, or the share said live): otherwise, when
        PUBACKs free one slot at a time, the split restarted at every slot and live data took all."""
        if boundary == 0:
            return _items(self.buffer.begin(free), False), 0, False
        n_backlog = min(share.backlog_slots(free), backlog_room)
        live = self.buffer.begin(free - n_backlog, after_id=boundary)
        asked = min(free - len(live.ids), backlog_room)
        backlog = self.buffer.begin(asked, up_to_id=boundary)
        if len(live.ids) + len(backlog.ids) < free:  # backlog ran short: live may use its slots
            more = self.buffer.begin(free - len(live.ids) - len(backlog.ids), after_id=boundary)
            live = Transaction(live.ids + more.ids, live.payloads + more.payloads, live.npoints + more.npoints)
        share.taken(len(backlog.ids), len(live.ids), competing=bool(live.ids))
        return _items(backlog, True) + _items(live, False), len(backlog.ids), asked > 0 and len(backlog.ids) < asked

    async def _fetch(self, free: int, boundary: int, share: _Share, room: int) -> tuple[list[_Item], int, bool]:
        """:meth:`_take` on the buffer's reader thread.  Cancelled while it runs (the gateway stopping),
        what it took is released again right after it (one reader thread: in order)."""
        job = self.writer.submit_read(self._take, free, boundary, share, room)
        try:
            return await outcome_on_loop(job)
        except asyncio.CancelledError:
            self.writer.submit_read(self._untake, job)
            raise

    def _untake(self, job: concurrent.futures.Future[tuple[list[_Item], int, bool]]) -> None:
        if job.done() and not job.cancelled() and job.exception() is None:
            items = job.result()[0]
            if items:
                self.buffer.end(_tx(items), [Outcome.RETRY] * len(items))

    async def _pump(self, conn: UplinkConnection) -> None:
        """A sliding window: a slot freed by a PUBACK is refilled at once (live data never waits
        for a whole round of backlog).

        Confirmed batches are deleted from the buffer in groups (half a window, or after 50 ms, or
        when nothing else is in flight): one SQLite commit per group instead of per PUBACK, which
        was the drain's largest cost.  Deleting late never loses data; after a crash it can only
        resend what was confirmed but not yet deleted (at most half a window more duplicates).
        """
        boundary = self.buffer.newest_id  # what is stored now was stored while the uplink was down
        share = _Share(self.backlog_share)
        inflight: dict[asyncio.Task[None], _Item] = {}
        acked: list[_Item] = []  # confirmed by PUBACK, not yet deleted
        deleting: asyncio.Future[None] | None = None  # the delete of the previous group, on the writer thread
        n_deleting = 0
        acked_since = 0.0
        backlog_inflight = 0
        reject_backoff = 1.0
        facts_version: int | None = None
        try:
            while True:
                if self.state_facts is not None:
                    version, facts = self.state_facts()
                    if version != facts_version:
                        facts_version = version
                        if facts or conn.facts:  # nothing to say, nothing said: no extra message
                            await conn.set_facts(facts)
                self.wake.clear()
                window = max(1, min(self.max_inflight, conn.window))
                free = window - len(inflight)
                # pending_batches counts what is in flight and confirmed but not yet deleted: nothing
                # else stored, nothing to fetch (no round trip to the writer thread)
                if deleting is not None and deleting.done():
                    deleting.result()  # a disk error deleting: fatal, as on the loop before
                    deleting, n_deleting = None, 0
                if free > 0 and self.buffer.pending_batches > len(inflight) + len(acked) + n_deleting:
                    # the backlog never holds more than its share of the window: a live batch
                    # always finds a free slot, and queues behind at most that many backlog bytes
                    room = max(1, math.ceil(self.backlog_share * window)) - backlog_inflight
                    items, n_backlog, short = await self._fetch(free, boundary, share, max(0, room))
                    backlog_inflight += n_backlog
                    if short and backlog_inflight == 0:
                        boundary = 0  # backlog drained: from now on everything is live (no range queries)
                    for item in items:
                        wire = _historical(item.payload) if item.historical and self.mark_backlog else item.payload
                        inflight[asyncio.ensure_future(self._publish(conn, wire))] = item
                    free -= len(items)
                waiters: set[asyncio.Future[Any]] = {*inflight, conn.lost}
                wake = asyncio.ensure_future(self.wake.wait()) if free > 0 else None
                if wake is not None:
                    waiters.add(wake)
                try:
                    # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancellation
                    done, _ = await asyncio.wait(
                        waiters, timeout=0.05 if acked else 1.0, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    if wake is not None:
                        wake.cancel()
                if conn.lost.done():  # noticed even while idle (nothing in flight)
                    raise RetryableError("connection to the broker lost")
                batch = [(t, inflight.pop(t)) for t in [t for t in inflight if t in done]]  # in publish order
                backlog_inflight -= sum(1 for _t, item in batch if item.historical)
                delivered, errors, failed = self._settle(batch)
                if failed:  # released at once: they come back first
                    await self.writer.end(_tx(failed), [Outcome.RETRY] * len(failed))
                if delivered and not acked:
                    acked_since = time.monotonic()
                acked += delivered
                if acked and deleting is None and (errors or not inflight or len(acked) >= max(1, window // 2)
                                                   or time.monotonic() - acked_since >= 0.05):
                    # on the writer thread, not awaited here: the window refills meanwhile (the batches
                    # stay in flight in the buffer until deleted, so they are never fetched again)
                    acked, done_items = [], acked
                    n_deleting = len(done_items)
                    deleting = asyncio.wrap_future(
                        self.writer.submit(self.buffer.end, _tx(done_items), [Outcome.DELIVERED] * n_deleting))
                for e in errors:
                    if not isinstance(e, RetryableError | RejectedError):
                        raise e
                retry = next((e for e in errors if isinstance(e, RetryableError)), None)
                if retry is not None:
                    raise retry
                rejected = [e for e in errors if isinstance(e, RejectedError)]
                if rejected:
                    self.stats.rejected_batches += len(rejected)
                    self.stats.last_error = str(rejected[0])
                    self._say_refused(len(rejected), str(rejected[0]))
                    await conn.set_alarm(
                        "publish_refused", reason=str(rejected[0]), rejected_batches=self.stats.rejected_batches
                    )
                    if all(getattr(e, "code", None) == 0x10 for e in rejected):
                        # nobody subscribed yet (an ingest re-subscribing after a broker restart): a
                        # transient, so retry soon rather than after the backoff of a real refusal
                        await asyncio.sleep(min(reject_backoff, 2.0))
                    else:
                        await asyncio.sleep(reject_backoff)
                    reject_backoff = min(reject_backoff * 2, self.backoff_max)
                elif delivered:
                    reject_backoff = 1.0
                    self._refused_said = None
                    if conn.alarm is not None:
                        log.info("Broker accepts batches again; alarm cleared.")
                        await conn.set_alarm(None)
        finally:
            # connection gone or stopping: what has no PUBACK stays buffered for the next attempt
            for t in inflight:
                t.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
            delivered, _errors, failed = self._settle(list(inflight.items()))
            self.stats.no_subscriber_acks = conn.no_subscriber_acks
            # both submitted before either is awaited: a second cancellation cannot skip one
            jobs = [] if deleting is None else [deleting]
            if failed:
                jobs.append(asyncio.wrap_future(
                    self.writer.submit_read(self.buffer.end, _tx(failed), [Outcome.RETRY] * len(failed))))
            if acked or delivered:
                gone = acked + delivered
                jobs.append(asyncio.wrap_future(
                    self.writer.submit(self.buffer.end, _tx(gone), [Outcome.DELIVERED] * len(gone))))
            await asyncio.gather(*jobs)

    async def _publish(self, conn: UplinkConnection, wire: bytes) -> None:
        """One publish, timed to its PUBACK; a refusal is counted by its reason code."""
        started = time.monotonic()
        try:
            await conn.write(wire)
        except RejectedError as err:
            self.stats.refused_by_code["unknown" if err.code is None else f"{err.code:#04x}"] += 1
            raise
        self.stats.publish_latency.observe(time.monotonic() - started)

    def _settle(
        self, batch: list[tuple[asyncio.Task[None], _Item]]
    ) -> tuple[list[_Item], list[BaseException], list[_Item]]:
        """Sort finished publishes: count the confirmed ones (returned, for deletion), and return the
        errors and the others (to be released in the buffer at once: they come back first)."""
        delivered: list[_Item] = []
        failed: list[_Item] = []
        errors: list[BaseException] = []
        st = self.stats
        for task, item in batch:
            exc = None if not task.done() or task.cancelled() else task.exception()
            if task.done() and not task.cancelled() and exc is None:
                delivered.append(item)
                st.published_batches += 1
                st.published_points += item.npoints
                if item.historical:
                    st.historical_batches += 1
                    st.historical_points += item.npoints
                if self.on_delivered is not None:
                    self.on_delivered(item.payload, item.historical)
            else:
                failed.append(item)
                if exc is not None:
                    errors.append(exc)
        return delivered, errors, failed


def _tx(items: list[_Item]) -> Transaction:
    return Transaction(tuple(i.id for i in items), tuple(i.payload for i in items), tuple(i.npoints for i in items))


@dataclass(frozen=True, slots=True)
class _Item:
    id: int
    payload: bytes
    npoints: int
    historical: bool


def _items(tx: Transaction, historical: bool) -> list[_Item]:
    return [_Item(i, p, n, historical) for i, p, n in zip(tx.ids, tx.payloads, tx.npoints, strict=True)]


class _Share:
    """Running split of window slots between backlog and live while both have batches waiting:
    each slot goes to the side that is furthest below its share (with a share of 0.5 they
    alternate, whatever the window)."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.backlog = 0
        self.live = 0

    def backlog_slots(self, free: int) -> int:
        b, n = self.backlog, self.backlog + self.live
        slots = 0
        for _ in range(free):
            n += 1
            if b + 1 <= self.share * n + 1e-9:
                b += 1
                slots += 1
        return slots

    def taken(self, backlog: int, live: int, *, competing: bool) -> None:
        if competing:
            self.backlog += backlog
            self.live += live
        else:  # one side alone: no debt builds up for the next contest
            self.backlog = self.live = 0


def _historical(payload: bytes) -> bytes:
    try:
        return mark_historical(payload)
    except CodecError:
        return payload  # not a batch this codec wrote: published as stored, the ingest counts it
