"""The 104 link rules of a controlling station (client), pure: frames and times in, frames and verdicts out.

What IEC 60870-5-104 §5 asks of the client, with no socket and no clock of its own (the caller passes
``now`` in seconds of a monotonic clock), so every rule is tested without an event loop:

* sequence numbers: every received I-frame must carry N(S) = V(R), and its N(R) must acknowledge only
  I-frames we sent and not yet saw acknowledged; anything else is a protocol error and the connection
  is closed (§5.1: no retransmission on TCP);
* acknowledgement of received I-frames with an S-frame after ``w`` of them, or ``t2`` after the oldest
  unacknowledged one (or piggy-backed on an I-frame we send);
* at most ``k`` of our I-frames unacknowledged: more wait in a queue;
* ``t1``: an I-frame or a U-frame act of ours unconfirmed that long -> the connection is dead;
* ``t3``: nothing received that long -> TESTFR act (whose con is then watched by ``t1``).

:class:`LinkError` carries the reason that becomes the points' quality reason.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from drivers.iec104.codec import SEQ_MOD, Frame, IFrame, SFrame, UFrame, UFunc, encode_frame

__all__ = ["LinkError", "LinkParams", "Session"]


@dataclass(frozen=True, slots=True)
class LinkParams:
    """The session parameters with the standard's defaults (IEC 60870-5-104 §9.6)."""

    k: int = 12
    w: int = 8
    t0: float = 30.0
    t1: float = 15.0
    t2: float = 10.0
    t3: float = 20.0


class LinkError(Exception):
    """The connection must be closed; ``reason`` is short and machine-friendly (timeout, protocol_error)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _between(lo: int, x: int, hi: int) -> bool:
    """lo <= x <= hi modulo 2^15."""
    return (x - lo) % SEQ_MOD <= (hi - lo) % SEQ_MOD


class Session:
    """Sequence numbers, acknowledgements and timers of one connection; output collects in :meth:`take`."""

    def __init__(self, params: LinkParams, now: float) -> None:
        self.p = params
        self.vs = 0  # next N(S) we send
        self.vr = 0  # next N(S) we expect
        self.acked = 0  # oldest of our I-frames not yet acknowledged by the peer
        self.started = False  # STARTDT con received
        self._out = bytearray()
        self._sent_at: deque[float] = deque()  # send time of each unacknowledged I-frame of ours
        self._queue: deque[bytes] = deque()  # ASDUs waiting for room in the k window
        self._unacked_rx = 0  # received I-frames we have not acknowledged
        self._oldest_rx: float | None = None  # when the oldest of them arrived
        self._u_pending: tuple[UFunc, float] | None = None  # our U act awaiting its con
        self._last_rx = now
        self.counters = {"i_received": 0, "i_sent": 0, "s_sent": 0, "testfr_sent": 0, "testfr_answered": 0}

    # ------------------------------------------------------------------ output
    def take(self) -> bytes:
        """The octets to write now (and forget them)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _send(self, frame: Frame) -> None:
        self._out += encode_frame(frame)

    def start(self, now: float) -> None:
        """STARTDT act: the first thing a client sends."""
        self._u_act(UFunc.STARTDT_ACT, now)

    def _u_act(self, func: UFunc, now: float) -> None:
        self._send(UFrame(func))
        self._u_pending = (func, now)

    def send_asdu(self, asdu: bytes, now: float) -> None:
        """Send an I-frame now if the k window has room, else when acknowledgements free it."""
        self._queue.append(asdu)
        self._flush_queue(now)

    def _flush_queue(self, now: float) -> None:
        while self._queue and self.started and len(self._sent_at) < self.p.k:
            self._send(IFrame(self.vs, self.vr, self._queue.popleft()))
            self.vs = (self.vs + 1) % SEQ_MOD
            self._sent_at.append(now)
            self.counters["i_sent"] += 1
            self._rx_acknowledged()  # N(R) rode along

    def _rx_acknowledged(self) -> None:
        self._unacked_rx = 0
        self._oldest_rx = None

    # ------------------------------------------------------------------ input
    def receive(self, frame: Frame, now: float) -> bytes | None:
        """Apply one received frame; returns the ASDU of an I-frame. Raises :class:`LinkError`."""
        self._last_rx = now
        if isinstance(frame, IFrame):
            if not self.started:
                raise LinkError("I-frame before STARTDT was confirmed", "protocol_error")
            if frame.ns != self.vr:
                raise LinkError(f"I-frame N(S) {frame.ns}, expected {self.vr} (a frame was lost or repeated)",
                                "sequence_error")
            self._ack(frame.nr, now)
            self.vr = (self.vr + 1) % SEQ_MOD
            self.counters["i_received"] += 1
            self._unacked_rx += 1
            if self._oldest_rx is None:
                self._oldest_rx = now
            if self._unacked_rx >= self.p.w:
                self._send_s()
            return frame.asdu
        if isinstance(frame, SFrame):
            self._ack(frame.nr, now)
            return None
        func = frame.func
        if func is UFunc.TESTFR_ACT:
            self._send(UFrame(UFunc.TESTFR_CON))
            self.counters["testfr_answered"] += 1
        elif func in (UFunc.STARTDT_CON, UFunc.STOPDT_CON, UFunc.TESTFR_CON):
            pending = self._u_pending
            want = {UFunc.STARTDT_ACT: UFunc.STARTDT_CON, UFunc.STOPDT_ACT: UFunc.STOPDT_CON,
                    UFunc.TESTFR_ACT: UFunc.TESTFR_CON}
            if pending is None or want[pending[0]] is not func:
                raise LinkError(f"unsolicited {func.name}", "protocol_error")
            self._u_pending = None
            if func is UFunc.STARTDT_CON:
                self.started = True
                self._flush_queue(now)
        else:  # STARTDT / STOPDT act: only a controlling station sends those
            raise LinkError(f"{func.name} from the controlled station", "protocol_error")
        return None

    def _ack(self, nr: int, now: float) -> None:
        """The peer acknowledged our I-frames up to nr - 1."""
        if not _between(self.acked, nr, self.vs):
            raise LinkError(f"N(R) {nr} acknowledges frames never sent (sent up to {self.vs})", "sequence_error")
        while self.acked != nr:
            self._sent_at.popleft()
            self.acked = (self.acked + 1) % SEQ_MOD
        self._flush_queue(now)  # the window has room again

    def _send_s(self) -> None:
        self._send(SFrame(self.vr))
        self.counters["s_sent"] += 1
        self._rx_acknowledged()

    # ------------------------------------------------------------------ timers
    def deadline(self) -> float:
        """When :meth:`tick` has something to do next."""
        times = [self._last_rx + self.p.t3] if self._u_pending is None else []
        if self._sent_at:
            times.append(self._sent_at[0] + self.p.t1)
        if self._u_pending is not None:
            times.append(self._u_pending[1] + self.p.t1)
        if self._oldest_rx is not None:
            times.append(self._oldest_rx + self.p.t2)
        return min(times) if times else self._last_rx + self.p.t3

    def tick(self, now: float) -> None:
        """Apply the timers at ``now``. Raises :class:`LinkError` when t1 ran out."""
        if self._sent_at and now - self._sent_at[0] >= self.p.t1:
            raise LinkError(f"I-frame not acknowledged within t1 = {self.p.t1:g} s", "timeout")
        if self._u_pending is not None and now - self._u_pending[1] >= self.p.t1:
            raise LinkError(f"no {self._u_pending[0].name.replace('_ACT', '')} con within t1 = {self.p.t1:g} s",
                            "timeout")
        if self._oldest_rx is not None and now - self._oldest_rx >= self.p.t2:
            self._send_s()
        if now - self._last_rx >= self.p.t3 and self._u_pending is None:
            self._u_act(UFunc.TESTFR_ACT, now)
            self.counters["testfr_sent"] += 1
