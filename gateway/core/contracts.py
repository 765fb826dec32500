"""The interfaces between the parts (DESIGN.md section 2), as typing Protocols.

- a polling driver (:class:`PollingDriver`) is an async context manager (connect / close) with
  ``read()`` -> one batch; the gateway's ``DeviceRunner`` sets its cadence;
- a pushing driver (:class:`StreamingDriver`, e.g. OPC UA subscriptions) yields batches from
  ``stream()`` until its session is lost, then raises a :class:`~gateway.core.errors.DeviceError`;
- a ``Stage`` is a pure function of a batch (no I/O).

The buffer and sink interfaces are the gateway's own (``gateway.buffer``, ``gateway.sinks``); the
static conformance checks of the implementations sit in ``gateway/app.py``, the composition root.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, Self

from gateway.core.point import SampleBatch

__all__ = ["PollingDriver", "Schedule", "Stage", "StreamingDriver"]

# a poll group with its own interval: (interval s, read that group once)
Schedule = tuple[float, Callable[[], Awaitable[SampleBatch]]]


class PollingDriver(Protocol):
    @property
    def name(self) -> str: ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def read(self) -> SampleBatch: ...


class StreamingDriver(Protocol):
    """A driver the device pushes data through (OPC UA subscriptions): no poll cadence of our own.

    ``stream()`` yields batches until the session is lost, then raises a :class:`DeviceError`.
    """

    @property
    def name(self) -> str: ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    def stream(self) -> AsyncIterator[SampleBatch]: ...


class Stage(Protocol):
    def __call__(self, batch: SampleBatch) -> SampleBatch: ...
