"""Moves batches from the buffer to the uplink; the only place sink errors become buffer outcomes.

Backlog and live data share the link.  At each (re)connect, every batch already in the buffer is
*backlog*: it was stored while the uplink was down (or had not caught up), is published with the
wire format's historical mark, oldest first.  Batches accepted after the connect are *live*.
While both exist, each round of the in-flight window gives ``backlog_share`` of its slots to the
backlog and the rest to live data; a side that has nothing to send leaves its slots to the other,
so the link is never idle while anything is pending, and live data is never starved by a drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.buffer import Outcome, SqliteBuffer, Transaction
from gateway.codec import mark_historical
from gateway.errors import CodecError, RejectedError, RetryableError
from gateway.sinks.mqtt import MqttUplink, UplinkConnection

__all__ = ["Forwarder", "ForwarderStats"]

log = logging.getLogger("edgegw.forwarder")


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
    ) -> None:
        """``on_delivered(payload, historical)`` is called for each batch confirmed by a PUBACK
        (benchmarks measure latency with it)."""
        self.buffer = buffer
        self.uplink = uplink
        self.wake = wake
        self.max_inflight = max_inflight
        self.backoff_max = backoff_max_s
        if not 0.0 <= backlog_share <= 1.0:
            raise ValueError("backlog_share must be within [0, 1]")
        self.backlog_share = backlog_share
        self.on_delivered = on_delivered
        self.stats = ForwarderStats()

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with self.uplink.connect() as conn:
                    if not self.stats.connected:
                        log.info("Connected to broker %s:%s.", self.uplink.cfg.host, self.uplink.cfg.port)
                    self.stats.connected = True
                    backoff = 0.2
                    await self._pump(conn)
            except RetryableError as err:
                self.stats.last_error = str(err)
                if self.stats.connected:
                    log.warning("Uplink lost: %s; batches stay buffered.", err)
                elif self.stats.reconnects == 0:
                    log.warning("Uplink unavailable: %s; batches stay buffered.", err)
                self.stats.connected = False
                self.stats.reconnects += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)

    def _take(self, window: int, boundary: int, credit: float) -> tuple[Transaction, int, float]:
        """This round's batches: backlog (ids <= boundary) first, then live; returns the combined
        transaction, how many of its batches are backlog, and the backlog credit carried over."""
        if boundary == 0:
            return self.buffer.begin(window), 0, 0.0
        quota = self.backlog_share * window + credit
        backlog_slots = int(quota)
        live = self.buffer.begin(window - backlog_slots, after_id=boundary)
        backlog = self.buffer.begin(window - len(live.ids), up_to_id=boundary)
        # the fraction of a slot not used this round is carried: with a window of 1 and a share of
        # 0.5, backlog and live alternate
        credit = quota - backlog_slots if live.ids else 0.0
        tx = Transaction(backlog.ids + live.ids, backlog.payloads + live.payloads, backlog.npoints + live.npoints)
        return tx, len(backlog.ids), credit

    async def _pump(self, conn: UplinkConnection) -> None:
        reject_backoff = 1.0
        boundary = self.buffer.newest_id  # what is stored now was stored while the uplink was down
        credit = 0.0
        while True:
            self.wake.clear()
            tx, n_backlog, credit = self._take(max(1, min(self.max_inflight, conn.window)), boundary, credit)
            if boundary and n_backlog == 0:
                boundary = 0  # backlog drained: from now on everything is live (no range queries)
            if not tx.ids:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                # races with the event being set, and the gateway would never stop
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.wake.wait()
                continue
            wire = [_historical(p) for p in tx.payloads[:n_backlog]] + list(tx.payloads[n_backlog:])
            results = await asyncio.gather(*(conn.write(p) for p in wire), return_exceptions=True)
            outcomes = [Outcome.DELIVERED if r is None else Outcome.RETRY for r in results]
            self.buffer.end(tx, outcomes)
            self._count(tx, n_backlog, outcomes)
            self.stats.no_subscriber_acks = conn.no_subscriber_acks
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, RetryableError | RejectedError):
                    raise r
            retry = next((r for r in results if isinstance(r, RetryableError)), None)
            if retry is not None:
                raise retry
            rejected = [r for r in results if isinstance(r, RejectedError)]
            if rejected:
                self.stats.rejected_batches += len(rejected)
                self.stats.last_error = str(rejected[0])
                log.error("Broker refused %d batch(es): %s; they stay buffered.", len(rejected), rejected[0])
                await asyncio.sleep(reject_backoff)
                reject_backoff = min(reject_backoff * 2, self.backoff_max)
            else:
                reject_backoff = 1.0

    def _count(self, tx: Transaction, n_backlog: int, outcomes: list[Outcome]) -> None:
        st = self.stats
        for k, (payload, n, outcome) in enumerate(zip(tx.payloads, tx.npoints, outcomes, strict=True)):
            if outcome is not Outcome.DELIVERED:
                continue
            historical = k < n_backlog
            st.published_batches += 1
            st.published_points += n
            if historical:
                st.historical_batches += 1
                st.historical_points += n
            if self.on_delivered is not None:
                self.on_delivered(payload, historical)


def _historical(payload: bytes) -> bytes:
    try:
        return mark_historical(payload)
    except CodecError:
        return payload  # not a batch this codec wrote: published as stored, the ingest counts it
