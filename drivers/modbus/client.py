"""A lean asyncio Modbus client for reads (FC 1-4): MBAP framing over TCP, RTU framing over TCP or serial.

Why not pymodbus's client: profiling ``edgegw bench modbus`` showed its per-request machinery (PDU
objects, per-register decoding into a list that we packed back into bytes, retry and disconnect
bookkeeping shared across unit ids) dominating the gateway's CPU.  This client hands the response's
data bytes straight to the block decoder, and lets the caller decide what a timeout means: on a
shared RS-485 line one dead unit id must not close the connection the live ones use.

The bytes are the pure :mod:`drivers.modbus.framing`'s (requests built there, the stream cut into
frames there); this module only moves them and matches answers to the one outstanding request.  It
trusts nothing it receives: a response with another transaction id (a late answer to a request that
timed out) or, on RTU, another unit id is dropped (a bad CRC never makes a frame); a wrong function
code, byte count, protocol id or MBAP length is a :class:`FrameError`.  One request is outstanding
per connection; callers serialise with :attr:`Connection.lock` (the shared-line discipline of
:class:`gateway.core.line.LineConnection`, which this class specialises with the Modbus framing).
"""

from __future__ import annotations

import enum
from collections.abc import Coroutine
from typing import Any

from drivers.modbus.framing import (
    ExceptionResponse,
    FrameError,
    MbapFramer,
    RtuFramer,
    crc16,
    mbap_request,
    read_data_bytes,
    read_response_data,
    rtu_request,
)
from gateway.core.line import LineConnection

__all__ = ["Connection", "ExceptionResponse", "FrameError", "Framing", "crc16"]


class Framing(enum.Enum):
    MBAP = "mbap"  # Modbus TCP: 7-byte header with transaction id, no CRC
    RTU = "rtu"  # unit id + PDU + CRC-16, on a serial line or tunnelled through TCP


class Connection(LineConnection[bytes]):
    """One transport (TCP socket or serial port) and its framing; reads only."""

    def __init__(self, framing: Framing, frame_gap_s: float = 0.0) -> None:
        super().__init__(frame_gap_s)
        self.framing = framing
        self._mbap = MbapFramer()
        self._rtu = RtuFramer("response", accept=self._awaited)
        self._expect: tuple[int, int, int] = (0, 0, 0)  # (transaction id or unit id, function code, data bytes)
        self._tid = 0
        self._unit = 0

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.dropped_frames += 1  # nobody is waiting: a late answer; drop it
            return
        try:
            if self.framing is Framing.MBAP:
                self._mbap.feed(data)
                self._take_mbap()
            else:
                self._rtu.feed(data)
                self._take_rtu()
        except FrameError as err:
            self._finish(err)

    def read(self, unit: int, function: int, address: int, count: int, timeout: float) -> Coroutine[Any, Any, bytes]:
        """Send one read request and return the response's data bytes (registers or packed bits).

        Callers hold :attr:`lock`.  Raises ExceptionResponse, FrameError, TimeoutError, ConnectionError.
        (A plain function returning the exchange's coroutine: one coroutine less per request, on the
        hot path.)
        """
        nbytes = read_data_bytes(function, count)

        def request() -> bytes:
            self._unit = unit
            if self.framing is Framing.MBAP:
                self._mbap.clear()
                self._tid = tid = (self._tid + 1) & 0xFFFF
                self._expect = (tid, function, nbytes)
                return mbap_request(tid, unit, function, address, count)
            self._rtu.clear()
            self._expect = (unit, function, nbytes)
            return rtu_request(unit, function, address, count)

        return self._transact(request, timeout)

    # -- matching frames to the outstanding request --------------------------------------------
    def _finish(self, result: bytes | BaseException) -> None:
        waiter = self._waiter
        (self._mbap if self.framing is Framing.MBAP else self._rtu).clear()
        if waiter is None or waiter.done():
            return
        if isinstance(result, BaseException):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)

    def _answer(self, pdu: bytes) -> None:
        _, function, nbytes = self._expect
        try:
            data = read_response_data(pdu, function, nbytes)
        except (ExceptionResponse, FrameError) as err:
            self._finish(err)
        else:
            self._finish(data)

    def _take_mbap(self) -> None:
        while (frame := self._mbap.next_frame()) is not None:
            tid, protocol, unit, pdu = frame
            if tid != self._expect[0]:  # a late answer to an earlier request: drop that frame only
                self.dropped_frames += 1
                continue
            if protocol != 0:
                raise FrameError(f"protocol id {protocol}, not 0")
            if unit != self._unit:
                raise FrameError(f"answer from unit id {unit}, asked {self._unit}")
            self._answer(pdu)
            return

    def _awaited(self, unit: int, function: int) -> bool:
        """The frame the outstanding RTU request waits for (lets the framer skip garbage that looks
        like the start of a long frame)."""
        return unit == self._expect[0] and function == self._expect[1]

    def _take_rtu(self) -> None:
        """A CRC-valid frame from our unit; then the PDU decides (a wrong function is a FrameError)."""
        rtu = self._rtu
        while (frame := rtu.next_frame()) is not None:
            unit, pdu = frame
            if unit != self._expect[0]:  # a frame for or from another unit id on the line
                self.dropped_frames += 1
                continue
            self._answer(pdu)
            return

