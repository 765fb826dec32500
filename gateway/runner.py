"""Polling cadence, timeouts and capped backoff for one device.

Each device runs in its own task with its own deadline, so a slow or dead device never delays
the others.  State transitions (device down, device back) are logged; everything else is
counted in :class:`DeviceHealth`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, Self

from gateway.catalog import Catalog
from gateway.errors import DeviceError, ReadError
from gateway.point import SampleBatch, now_ns

__all__ = ["DeviceHealth", "DeviceRunner", "PollingDriver", "StreamRunner", "StreamingDriver"]

log = logging.getLogger("edgegw.runner")


class PollingDriver(Protocol):
    @property
    def name(self) -> str: ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def read(self) -> SampleBatch: ...


@dataclass(slots=True)
class DeviceHealth:
    up: bool = False
    polls: int = 0
    failed_polls: int = 0
    connects: int = 0
    connect_failures: int = 0
    deadline_misses: int = 0
    last_error: str = ""


class DeviceRunner:
    def __init__(
        self,
        driver: PollingDriver,
        catalog: Catalog,
        emit: Callable[[SampleBatch], Awaitable[None]],
        *,
        poll_interval_s: float,
        timeout_s: float,
        backoff_max_s: float,
        backoff_initial_s: float = 0.5,
    ) -> None:
        self.driver = driver
        self.catalog = catalog
        self.emit = emit
        self.interval = poll_interval_s
        self.timeout = timeout_s
        self.backoff_max = backoff_max_s
        self.backoff_initial = min(backoff_initial_s, backoff_max_s)
        self.health = DeviceHealth()

    async def run(self) -> None:
        name = self.driver.name
        backoff = self.backoff_initial
        await asyncio.sleep(random.uniform(0, min(self.interval, 1.0)) * 0.1)  # jittered start
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    await self.driver.__aenter__()
            except (DeviceError, TimeoutError) as err:
                self.health.connect_failures += 1
                await self._failed(name, str(err) or "connect timed out", "unreachable")
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.backoff_max)
                continue
            self.health.connects += 1
            try:
                await self._poll_loop(name)
            except (DeviceError, TimeoutError) as err:
                reason = err.reason if isinstance(err, ReadError) else "timeout"
                await self._failed(name, str(err) or "poll timed out", reason)
                backoff = self.backoff_initial
                await asyncio.sleep(backoff)
            finally:
                await self.driver.__aexit__(None, None, None)

    async def _poll_loop(self, name: str) -> None:
        next_at = time.monotonic()
        while True:
            async with asyncio.timeout(self.timeout):
                batch = await self.driver.read()
            self.health.polls += 1
            if not self.health.up:
                self.health.up = True
                log.info("Device %s is up.", name, extra={"device": name})
            await self.emit(batch)
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:
                missed = int(-delay // self.interval) + 1
                self.health.deadline_misses += missed
                next_at += missed * self.interval
                delay = next_at - time.monotonic()
            await asyncio.sleep(max(delay, 0))

    async def _failed(self, name: str, message: str, reason: str) -> None:
        self.health.failed_polls += 1
        self.health.last_error = message
        if self.health.up or self.health.failed_polls == 1:
            log.warning("Device %s is down: %s", name, message, extra={"device": name})
        self.health.up = False
        await self.emit(self.catalog.bad_samples(name, now_ns(), reason))


class StreamingDriver(Protocol):
    """A driver the device pushes data through (OPC UA subscriptions): no poll cadence of our own.

    ``stream()`` yields batches until the session is lost, then raises a :class:`DeviceError`.
    """

    @property
    def name(self) -> str: ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    def stream(self) -> AsyncIterator[SampleBatch]: ...


class StreamRunner:
    """Connect, consume the stream, and on loss reconnect with capped, jittered backoff.

    The same health counters and state-transition logging as :class:`DeviceRunner`; re-entering
    the driver re-creates the session and every subscription, so data flows again without any
    manual action after a server restart.
    """

    def __init__(
        self,
        driver: StreamingDriver,
        catalog: Catalog,
        emit: Callable[[SampleBatch], Awaitable[None]],
        *,
        connect_timeout_s: float,
        backoff_max_s: float,
        backoff_initial_s: float = 0.5,
    ) -> None:
        self.driver = driver
        self.catalog = catalog
        self.emit = emit
        self.timeout = connect_timeout_s
        self.backoff_max = backoff_max_s
        self.backoff_initial = min(backoff_initial_s, backoff_max_s)
        self.health = DeviceHealth()

    async def run(self) -> None:
        name = self.driver.name
        backoff = self.backoff_initial
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    await self.driver.__aenter__()
            except (DeviceError, TimeoutError) as err:
                self.health.connect_failures += 1
                await self._failed(name, str(err) or "connect timed out", "unreachable")
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.backoff_max)
                continue
            self.health.connects += 1
            backoff = self.backoff_initial
            if not self.health.up:
                self.health.up = True
                log.info("Device %s is up.", name, extra={"device": name})
            try:
                async for batch in self.driver.stream():
                    self.health.polls += 1
                    await self.emit(batch)
            except DeviceError as err:
                reason = err.reason if isinstance(err, ReadError) else "disconnected"
                await self._failed(name, str(err), reason)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            finally:
                await self.driver.__aexit__(None, None, None)

    async def _failed(self, name: str, message: str, reason: str) -> None:
        self.health.failed_polls += 1
        self.health.last_error = message
        if self.health.up or self.health.failed_polls == 1:
            log.warning("Device %s is down: %s", name, message, extra={"device": name})
        self.health.up = False
        await self.emit(self.catalog.bad_samples(name, now_ns(), reason))
