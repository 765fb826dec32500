"""The independent oracle of the fault tests: what the simulated PLC actually served, against what
reached the broker.

The gateway's own counters cannot judge "nothing lost": a sample lost before the buffer never enters
the ledger, which then still balances. :class:`RecordingPlc` is the firmware stub on a real pymodbus
server that also notes, on the wire, every answer it sends to a read of the gas substation's
input-register block (the tick it carries, and when). Each such answer becomes one read at the
gateway, stamped with one source time; :func:`check_against_plc` matches the reads that reached the
broker (or are still buffered) against those answers tick by tick, and every value against the stub
(``expected_values(stub.reading(seq))``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from firmware_stubs.gas_substation import INPUT_REGISTERS, GasSubstation, expected_values
from gateway.codec import decode
from hil.modbus_server import SimulatedPlc

__all__ = ["IR_POINTS", "PlcVerdict", "RecordingPlc", "check_against_plc"]

IR_POINTS = ("seq", "ch4", "co", "o2", "wind", "temp")
_FC_READ_INPUT_REGISTERS = 4


class RecordingPlc(SimulatedPlc):
    """A :class:`SimulatedPlc` (Modbus TCP, one gas substation) that records each input-register
    block it answers: ``served`` is a list of (monotonic time, tick)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]  # SimulatedPlc's keywords, passed through
        self.served: list[tuple[float, int]] = []

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        data = super()._trace_packet(sending, data)
        # MBAP header (7 bytes), function code, byte count, then the registers: seq is the first uint32
        if sending and len(data) >= 9 + 2 * INPUT_REGISTERS and data[7] == _FC_READ_INPUT_REGISTERS \
                and data[8] == 2 * INPUT_REGISTERS:
            self.served.append((time.monotonic(), int.from_bytes(data[9:13], "big")))
        return data


@dataclass
class PlcVerdict:
    served: int  # input-register reads the PLC answered
    received: int  # of them, distinct reads that reached the broker or are still buffered
    excused: int  # answered within a window in which the contract allows a loss (kill -9)
    values_checked: int

    def __str__(self) -> str:
        return (f"PLC answered {self.served} input-register reads, {self.received} arrived or are buffered; "
                f"{self.excused} were answered close to a kill or the stop (a loss allowed there), "
                f"{self.served - self.received} missing")


def check_against_plc(
    plc: RecordingPlc, payloads: Iterable[bytes], *, kills: Sequence[float] = (), before_s: float = 0.3,
    after_s: float = 0.3, stopped: float | None = None, stop_before_s: float = 0.3,
) -> PlcVerdict:
    """Every read the PLC answered reached the broker (``payloads``: received or still buffered) with
    the stub's values, except reads answered from ``before_s`` before to ``after_s`` after one of
    ``kills`` (monotonic times of a SIGKILL, or of an exit on an error: what was polled but not yet
    committed to the buffer may die with the process, and an answer on its way to a killed process
    never reaches it), and reads answered from ``stop_before_s`` before ``stopped`` on (when the gateway
    was told to stop: a graceful stop commits every read the gateway received, but a poll cancelled
    while its answer is on the way never becomes a sample). Nothing arrives that the PLC did not
    answer."""
    stub: GasSubstation = plc.stub
    reads: dict[tuple[str, int], dict[str, object]] = defaultdict(dict)
    for payload in payloads:
        for p in decode(payload).points:
            device, name = p.key.split(".", 1)
            if name in IR_POINTS:
                reads[(device, p.ts_ns)][name] = p.value
    received: Counter[int] = Counter()
    checked = 0
    for (device, ts), group in reads.items():
        if group.get("seq") is None:
            continue  # a bad read (the device briefly unreachable) carries no values
        seq = group["seq"]
        assert isinstance(seq, int), (device, ts, group)
        want = expected_values(stub.reading(seq))
        assert group == {n: want[n] for n in IR_POINTS}, (device, ts, group, want)
        received[seq] += 1
        checked += 1
    served: Counter[int] = Counter()
    excusable: Counter[int] = Counter()
    for t, seq in plc.served:
        served[seq] += 1
        near_kill = any(k - before_s <= t <= k + after_s for k in kills)
        if near_kill or (stopped is not None and t >= stopped - stop_before_s):
            excusable[seq] += 1
    invented = {seq: n for seq, n in received.items() if n > served[seq]}
    assert not invented, f"reads the PLC never answered (seq: received count): {invented}"
    lost = {seq: (n, received[seq]) for seq, n in served.items() if n - received[seq] > excusable[seq]}
    assert not lost, (
        f"{len(lost)} ticks lost reads outside any kill or stop window (seq: (answered, arrived)): "
        f"{dict(sorted(lost.items())[:20])}"
    )
    return PlcVerdict(served=sum(served.values()), received=sum(received.values()),
                      excused=sum(excusable.values()), values_checked=checked)
