"""Uplink partitions (a blackholed route, short version of reliability scenario 10).

The gateway reaches a real mosquitto through hil's FaultProxy on 127.0.0.1; ``partition()`` stops
all traffic without closing anything (the socket looks open, nothing arrives, new connections never
get through), as a dead 4G or microwave link looks.  Acquisition goes on throughout.

Oracles: independent of the gateway (tests/plc_oracle.py), every input-register read the simulated
PLC answered reached the subscriber or is still buffered, with the stub's values for its tick, and
nothing else arrived; the gateway notices the dead link within 1.5 x keepalive (plus scheduling slack) and
keeps everything in the buffer; after each heal it reconnects by itself and drains; at the end the
buffer ledger balances (accepted = delivered, nothing dropped or pending), a subscriber connected to
mosquitto directly received every batch sequence number 1..accepted, and duplicates stay within
the in-flight window per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.gas_substation import point_config
from gateway.app import Gateway
from gateway.buffer import SqliteBuffer
from gateway.codec import decode
from gateway.config import parse
from hil.services import Mosquitto
from hil.tcp_proxy import FaultProxy
from tests.collector import collect
from tests.conftest import eventually
from tests.plc_oracle import PlcVerdict, RecordingPlc, check_against_plc
from tests.test_e2e import running

__all__: list[str] = []

KEEPALIVE_S = 5
MAX_INFLIGHT = 5
PARTITIONS = 2
PARTITION_S = 8.0


def _config(plc_port: int, proxy_port: int, tmp: Path) -> Any:
    return parse({
        "gateway": {"id": "gw-part", "site": "ordos-mine-11", "enterprise_prefix": "88.608.5288"},
        "devices": [
            {"type": "modbus_tcp", "name": f"gas-sub-{d}", "host": "127.0.0.1", "port": plc_port,
             "poll_interval_ms": 50, "timeout_ms": 1000, "backoff_max_ms": 400, "points": point_config()}
            for d in range(2)
        ],
        "buffer": {"path": str(tmp / "buffer.db"), "linger_ms": 20},
        "uplink": {"host": "127.0.0.1", "port": proxy_port, "topic_prefix": "part", "client_id": "gw-part",
                   "keepalive_s": KEEPALIVE_S, "timeout_s": 3, "max_inflight": MAX_INFLIGHT},
    })


@contextlib.asynccontextmanager
async def _rig(
    mosquitto: Mosquitto, tmp: Path, seed: int
) -> AsyncIterator[tuple[Gateway, FaultProxy, list[bytes], RecordingPlc]]:
    """A simulated PLC, the gateway's uplink through a FaultProxy to mosquitto, and a subscriber
    connected to mosquitto directly (the receiving end, never faulted)."""
    async with RecordingPlc(tick_s=0.02, seed=seed) as plc, FaultProxy("127.0.0.1", mosquitto.port) as proxy, \
            collect(mosquitto.port, "part/+/+/data", f"partition-subscriber-{seed}") as received:
        yield Gateway(_config(plc.port, proxy.port, tmp)), proxy, received, plc


@pytest.mark.integration
async def test_partitions_are_detected_survived_and_drained(mosquitto: Mosquitto, tmp_path: Path) -> None:
    detect_s: list[float] = []
    resume_s: list[float] = []
    async with _rig(mosquitto, tmp_path, seed=8) as (gw, proxy, received, plc):
        async with running(gw.run()):
            await eventually(lambda: gw.forwarder.stats.published_batches >= 10, what="first deliveries")
            for _ in range(PARTITIONS):
                proxy.partition()
                t0 = time.monotonic()
                await eventually(lambda: not gw.forwarder.stats.connected, timeout=20, interval=0.05,
                                 what="the gateway to notice the dead link")
                detect_s.append(time.monotonic() - t0)
                pending_then = gw.buffer.pending_batches
                await asyncio.sleep(max(0.0, PARTITION_S - (time.monotonic() - t0)))
                assert gw.buffer.pending_batches > pending_then  # acquisition went on, into the buffer
                proxy.thaw()
                t1 = time.monotonic()
                published = gw.forwarder.stats.published_batches
                await eventually(lambda p=published: gw.forwarder.stats.published_batches > p, timeout=30,
                                 interval=0.05, what="deliveries after the link came back")
                resume_s.append(time.monotonic() - t1)
                await eventually(lambda: gw.buffer.pending_batches <= 2, timeout=30, what="the backlog to drain")
            stopped = time.monotonic()
        outcome = await _delivery(gw, received, tmp_path, plc, stopped)

    noticed, resumed = (", ".join(f"{s:.2f}" for s in xs) for xs in (detect_s, resume_s))
    print(f"\npartitions x{PARTITIONS} of {PARTITION_S:.0f} s, keepalive {KEEPALIVE_S} s: dead link noticed after "
          f"{noticed} s; deliveries resumed {resumed} s after the heal; {outcome}, "
          f"reconnects {gw.forwarder.stats.reconnects}")
    assert all(s <= 1.5 * KEEPALIVE_S + 2.0 for s in detect_s), detect_s
    outcome.check(MAX_INFLIGHT * PARTITIONS)


@pytest.mark.integration
async def test_connection_resets_lose_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The uplink's TCP connection reset every 0.7 s for 7 s (reliability scenario 11, reset_peer,
    short version): the gateway reconnects each time, and every batch arrives."""
    cuts = 10
    async with _rig(mosquitto, tmp_path, seed=9) as (gw, proxy, received, plc):
        async with running(gw.run()):
            await eventually(lambda: gw.forwarder.stats.published_batches >= 5, what="first deliveries")
            for _ in range(cuts):
                await asyncio.sleep(0.7)
                proxy.cut()
            await eventually(lambda: gw.forwarder.stats.connected and gw.buffer.pending_batches <= 2, timeout=30,
                             what="reconnected and drained")
            stopped = time.monotonic()
        outcome = await _delivery(gw, received, tmp_path, plc, stopped)
    print(f"\n{cuts} connection resets: {outcome}, reconnects {gw.forwarder.stats.reconnects}")
    assert gw.forwarder.stats.reconnects >= cuts // 2  # the resets did hit live connections
    outcome.check(MAX_INFLIGHT * cuts)


@dataclass
class _Delivery:
    counters: dict[str, int]
    seqs: Counter[int]  # batch sequence numbers received, with repeats
    kept: set[int]  # left in the buffer by the stop, for the next start
    plc: PlcVerdict  # the independent oracle's verdict (it raises on a loss)

    def __str__(self) -> str:
        c = self.counters
        return (f"{c['accepted_batches']} batches accepted, {c['delivered_batches']} delivered, {len(self.kept)} "
                f"kept buffered at the stop, {self.seqs.total()} received, {self.duplicates} duplicates; {self.plc}")

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.seqs.values())

    def check(self, max_duplicates: int) -> None:
        """Nothing accepted is lost: each batch arrived or is still buffered; nothing was dropped."""
        c = self.counters
        assert c["delivered_batches"] + len(self.kept) == c["accepted_batches"]
        assert c["dropped_oldest_points"] == c["dropped_newest_points"] == c["expired_points"] == 0
        assert set(self.seqs) | self.kept == set(range(1, c["accepted_batches"] + 1))  # no gap, nothing else
        assert self.duplicates <= max_duplicates


async def _delivery(gw: Gateway, received: list[bytes], tmp: Path, plc: RecordingPlc, stopped: float) -> _Delivery:
    """After the gateway stopped (a graceful stop drains while connected; what it could not send
    stays buffered): wait until the subscriber has every delivered batch, and collect the result."""
    counters = gw.buffer_counters
    buffered = _pending_payloads(tmp / "buffer.db")
    kept = {decode(p).seq for p in buffered}
    await eventually(lambda: len({decode(p).seq for p in received} - kept) >= counters["delivered_batches"],
                     timeout=20, what="every delivered batch at the subscriber")
    # no kill here: every read the PLC answered must be at the subscriber or in the buffer (but for a
    # poll cancelled by the stop while its answer was on the way)
    verdict = check_against_plc(plc, [*received, *buffered], stopped=stopped)
    return _Delivery(counters, Counter(decode(p).seq for p in received), kept, verdict)


def _pending_payloads(db: Path) -> list[bytes]:
    buf = SqliteBuffer(db, readonly=True)
    try:
        return [b.payload for b in buf.batches()]
    finally:
        buf.close()
