"""Moves batches from the buffer to the uplink; the only place sink errors become buffer outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from gateway.buffer import Outcome, SqliteBuffer
from gateway.errors import RejectedError, RetryableError
from gateway.sinks.mqtt import MqttUplink, UplinkConnection

__all__ = ["Forwarder", "ForwarderStats"]

log = logging.getLogger("edgegw.forwarder")


@dataclass(slots=True)
class ForwarderStats:
    connected: bool = False
    published_batches: int = 0
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
    ) -> None:
        self.buffer = buffer
        self.uplink = uplink
        self.wake = wake
        self.max_inflight = max_inflight
        self.backoff_max = backoff_max_s
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

    async def _pump(self, conn: UplinkConnection) -> None:
        reject_backoff = 1.0
        while True:
            self.wake.clear()
            tx = self.buffer.begin(max(1, min(self.max_inflight, conn.window)))
            if not tx.ids:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                # races with the event being set, and the gateway would never stop
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.wake.wait()
                continue
            results = await asyncio.gather(*(conn.write(p) for p in tx.payloads), return_exceptions=True)
            outcomes = [Outcome.DELIVERED if r is None else Outcome.RETRY for r in results]
            self.buffer.end(tx, outcomes)
            delivered = outcomes.count(Outcome.DELIVERED)
            self.stats.published_batches += delivered
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
