"""Composition root of the edge role: drivers -> normalise -> batcher -> buffer -> forwarder.

Every hand-off is bounded: device runners put poll batches into a bounded queue (a full queue
slows polling rather than growing memory); the batcher commits encoded batches to the durable
buffer; the forwarder publishes them.  Supervision is one TaskGroup: a fatal error (a disk error
in the buffer) stops the gateway with a non-zero exit, so systemd restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from drivers.modbus.config import ModbusTcpDevice
from drivers.modbus.driver import ModbusTcpDriver
from drivers.opcua.config import OpcUaDevice
from drivers.opcua.driver import OpcUaDriver
from gateway.buffer import SqliteBuffer, open_buffer
from gateway.catalog import Catalog, build_catalog
from gateway.codec import encode
from gateway.config import BufferConfig, Config, DeviceConfig
from gateway.errors import BufferFullError, ConfigError, ConfigIssue
from gateway.forwarder import Forwarder
from gateway.point import SampleBatch, now_ns
from gateway.runner import DeviceRunner, PollingDriver, StreamRunner
from gateway.sinks.mqtt import MqttUplink
from pipelines.normalise import Normalise

__all__ = ["Batcher", "Gateway"]

log = logging.getLogger("edgegw.app")


class Batcher:
    """Normalises poll batches and commits them to the buffer in batches of up to N points."""

    def __init__(
        self,
        catalog: Catalog,
        buffer: SqliteBuffer,
        cfg: BufferConfig,
        wake: asyncio.Event,
        observer: Callable[[SampleBatch], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.buffer = buffer
        self.max_points = cfg.batch_max_points
        self.linger = cfg.linger_ms / 1000
        self.wake = wake
        self.normalise = Normalise(catalog)
        self.queue: asyncio.Queue[SampleBatch] = asyncio.Queue(maxsize=64)
        self.observer = observer
        counted = buffer.counters()
        # every batch offered to the buffer is either accepted or counted as dropped_newest: their sum
        # survives kill -9 with the batches, so batch sequence numbers are never reused after a restart
        self.seq = counted["accepted_batches"] + counted["dropped_newest_batches"]
        self.pending: SampleBatch = []

    async def submit(self, batch: SampleBatch) -> None:
        await self.queue.put(batch)

    async def run(self) -> None:
        deadline: float | None = None
        try:
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    async with asyncio.timeout(timeout):
                        batch = await self.queue.get()
                except TimeoutError:
                    await self.flush()
                    deadline = None
                    continue
                batch = self.normalise(batch)
                if self.observer is not None:
                    self.observer(batch)
                self.pending.extend(batch)
                if deadline is None:
                    deadline = time.monotonic() + self.linger
                if len(self.pending) >= self.max_points:
                    await self.flush()
                    deadline = None
        finally:
            # graceful stop: what was polled but not yet committed goes to the buffer too
            while not self.queue.empty():
                self.pending.extend(self.normalise(self.queue.get_nowait()))
            if self.pending:
                self._commit_all()

    def _commit_all(self) -> None:
        while self.pending:
            chunk = self.pending[: self.max_points]
            # the chunk leaves ``pending`` only once the buffer took it (or counted its drop): under
            # when_full = block a refused chunk stays and is offered again
            self.buffer.put(encode(self.catalog, chunk, self.seq + 1, now_ns()), len(chunk))
            self.seq += 1
            del self.pending[: len(chunk)]

    async def flush(self) -> None:
        blocked = False
        while True:
            try:
                self._commit_all()
                break
            except BufferFullError as err:
                if not blocked:
                    log.warning("%s; when_full = block: polling is held back until the uplink frees room.", err)
                    blocked = True
                self.wake.set()
                await asyncio.sleep(0.5)
        if blocked:
            log.info("Buffer has room again; polling resumes.")
        self.wake.set()


async def _cancel(tasks: list[asyncio.Task[None]], rounds: int = 40) -> None:
    """Cancel tasks and wait for them to end.

    A library may swallow a cancellation: ``asyncio.wait_for`` on Python 3.11 does when the awaited
    future completes at the same moment (pymodbus awaits every response that way), and the device
    task then simply polls on, so the gateway never stopped.  Ask again until each task has ended.
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.25)
    if pending:
        log.error("Tasks %s ignore cancellation; stopping without them.", sorted(t.get_name() for t in pending))
    await asyncio.gather(*(t for t in tasks if t.done()), return_exceptions=True)


def _make_driver(dev: DeviceConfig, first_index: int) -> PollingDriver | OpcUaDriver:
    """The driver for a device config: the config union is the registry (no plugins, no string imports)."""
    if isinstance(dev, ModbusTcpDevice):
        return ModbusTcpDriver(dev, first_index)
    if isinstance(dev, OpcUaDevice):
        return OpcUaDriver(dev, first_index)
    raise TypeError(f"no driver for device type {type(dev).__name__}")


class Gateway:
    def __init__(self, cfg: Config, observer: Callable[[SampleBatch], None] | None = None) -> None:
        if cfg.gateway is None or cfg.uplink is None or not cfg.devices:
            missing = [n for n, v in (("gateway", cfg.gateway), ("uplink", cfg.uplink)) if v is None]
            if not cfg.devices:
                missing.append("devices")
            raise ConfigError([ConfigIssue(m, "required to run a gateway") for m in missing])
        self.cfg = cfg
        self.catalog = build_catalog(cfg)
        self.wake = asyncio.Event()
        bc = cfg.buffer
        self.buffer = open_buffer(bc)
        self.batcher = Batcher(self.catalog, self.buffer, bc, self.wake, observer)
        self.uplink = MqttUplink(cfg.uplink, cfg.gateway.site, cfg.gateway.id)
        self.forwarder = Forwarder(self.buffer, self.uplink, self.wake, max_inflight=cfg.uplink.max_inflight)
        self.runners: list[DeviceRunner | StreamRunner] = []
        self._final_counters: dict[str, int] | None = None
        for dev in cfg.devices:
            if not dev.enabled:
                continue
            driver = _make_driver(dev, self.catalog.by_device[dev.name].start)
            if isinstance(driver, OpcUaDriver) and driver.streaming:
                self.runners.append(
                    StreamRunner(
                        driver,
                        self.catalog,
                        self.batcher.submit,
                        connect_timeout_s=max(dev.timeout_ms / 1000, 10.0),
                        backoff_max_s=dev.backoff_max_ms / 1000,
                    )
                )
                continue
            self.runners.append(
                DeviceRunner(
                    driver,
                    self.catalog,
                    self.batcher.submit,
                    poll_interval_s=dev.poll_interval_ms / 1000,
                    timeout_s=dev.timeout_ms / 1000,
                    backoff_max_s=dev.backoff_max_ms / 1000,
                )
            )

    @property
    def buffer_counters(self) -> dict[str, int]:
        """Live buffer counters; after :meth:`run` returned, their values at shutdown."""
        return self._final_counters if self._final_counters is not None else self.buffer.counters()

    async def run(self) -> None:
        """Run until cancelled; then stop gracefully: acquisition first, then commit what was
        polled, then give the uplink up to ``uplink.shutdown_drain_s`` to deliver the buffer."""
        log.info(
            "Gateway %s starting: %d devices, %d points, buffer %s (durability %s, %d batches pending).",
            self.catalog.gateway_id,
            len(self.runners),
            len(self.catalog.points),
            self.buffer.path,
            self.buffer.durability_label,
            self.buffer.pending_batches,
        )
        forwarder = asyncio.create_task(self.forwarder.run(), name="forwarder")
        upkeep = asyncio.create_task(self._upkeep(), name="buffer-upkeep")
        batcher = asyncio.create_task(self.batcher.run(), name="batcher")
        devices = [asyncio.create_task(r.run(), name=f"device:{r.driver.name}") for r in self.runners]
        everything = [forwarder, upkeep, batcher, *devices]
        try:
            done, _ = await asyncio.wait(everything, return_when=asyncio.FIRST_COMPLETED)
            for task in done:  # these tasks only end by failing
                exc = task.exception()
                if exc is not None:
                    raise exc
                raise RuntimeError(f"task {task.get_name()} stopped unexpectedly")
        except asyncio.CancelledError:
            await self._stop_gracefully(devices, batcher)
            raise
        finally:
            await _cancel(everything)
            self._final_counters = self.buffer.counters()
            pending = self.buffer.pending_batches
            self.buffer.close()
            log.info("Gateway %s stopped; %d batches stay buffered.", self.catalog.gateway_id, pending)

    async def _upkeep(self) -> None:
        """Sync the buffer when due (interval durability) and expire batches past max_age_s."""
        while True:
            await asyncio.sleep(0.1)
            self.buffer.maintain()

    async def _stop_gracefully(self, devices: list[asyncio.Task[None]], batcher: asyncio.Task[None]) -> None:
        await _cancel(devices)
        await _cancel([batcher])  # its cleanup commits every polled sample to the buffer
        self.wake.set()
        assert self.cfg.uplink is not None
        deadline = time.monotonic() + self.cfg.uplink.shutdown_drain_s
        # polled, bounded by the deadline: the buffer has no "drained" notification
        while self.buffer.pending_batches and self.forwarder.stats.connected:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
