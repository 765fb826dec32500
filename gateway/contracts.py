"""The interfaces between the parts (DESIGN.md section 2), as typing Protocols.

- a polling ``Driver`` is an async context manager (connect / close) with ``read()`` -> one batch;
- a ``Stage`` is a pure function of a batch (no I/O);
- the ``Buffer`` accepts encoded batches and releases them only through ``end`` with an outcome;
- a ``Sink`` writes one batch or raises RetryableError / RejectedError / PartialWriteError; the
  forwarder alone turns those into buffer outcomes.

Implementations are checked against these by mypy (see the assignments at the bottom).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from gateway.point import SampleBatch
from gateway.runner import PollingDriver

if TYPE_CHECKING:
    from gateway.buffer import Outcome, Transaction

__all__ = ["Buffer", "PollingDriver", "Sink", "Stage"]


class Stage(Protocol):
    def __call__(self, batch: SampleBatch) -> SampleBatch: ...


class Buffer(Protocol):
    def put(self, payload: bytes, npoints: int, created_ns: int | None = None) -> bool: ...
    def begin(self, max_batches: int) -> Transaction: ...
    def end(self, tx: Transaction, outcomes: list[Outcome]) -> None: ...
    @property
    def pending_batches(self) -> int: ...


class Sink(Protocol):
    async def write(self, payload: bytes) -> None: ...


if TYPE_CHECKING:  # static conformance checks, no runtime cost
    from drivers.dlt645.driver import Dlt645Driver
    from drivers.modbus.driver import ModbusTcpDriver
    from drivers.s7.driver import S7Driver
    from gateway.buffer import SqliteBuffer
    from gateway.sinks.mqtt import UplinkConnection
    from pipelines.normalise import Normalise

    def _conforms(
        d: ModbusTcpDriver, s: Normalise, b: SqliteBuffer, k: UplinkConnection, m: Dlt645Driver, s7: S7Driver
    ) -> None:
        _d: PollingDriver = d
        _m: PollingDriver = m
        _s7: PollingDriver = s7
        _s: Stage = s
        _b: Buffer = b
        _k: Sink = k
