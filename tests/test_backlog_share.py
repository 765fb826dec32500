"""Backlog drain against a real mosquitto: replayed batches carry the historical mark, come
oldest first, and share the uplink with live data by ``backlog_share`` instead of starving it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from gateway.buffer import SqliteBuffer
from gateway.buffer.sqlite import Outcome, Transaction
from gateway.catalog import Catalog, PointInfo
from gateway.codec import Batch, Encoder, decode
from gateway.config import MqttConfig
from gateway.core.lineproto import telemetry_line
from gateway.core.point import Point, Quality
from gateway.forwarder import Forwarder, _Share
from gateway.sinks.mqtt import MqttClient, MqttUplink
from hil.services import Mosquitto
from tests.conftest import eventually

__all__: list[str] = []

BACKLOG, LIVE = 120, 20


def _catalog() -> Catalog:
    pts = tuple(PointInfo(i, f"d.p{i}", f"88.608.5288/DEV.s.d.p{i}", "d", "", "", 1.0, 0.0, None, None, "general",
                          ()) for i in range(10))
    return Catalog("gw-bl", "s1", pts, {"d": range(10)})


@pytest.mark.integration
async def test_backlog_is_historical_fifo_and_shares_the_link(mosquitto: Mosquitto, tmp_path: Path) -> None:
    enc = Encoder(_catalog())
    buf = SqliteBuffer(tmp_path / "buf.db")
    for seq in range(1, BACKLOG + 1):  # stored while the uplink was down
        buf.put(enc.encode([(i, seq, float(i), Quality.GOOD, None) for i in range(10)], seq, seq), 10)
    cfg = MqttConfig(port=mosquitto.port, topic_prefix="bl", timeout_s=5)
    received: list[Batch] = []
    order: list[bool] = []  # historical flag of each delivered batch, in PUBACK order
    wake = asyncio.Event()

    def delivered(_payload: bytes, hist: bool) -> None:
        order.append(hist)
        if order.count(True) == 2 and len(order) == 2:
            # live data arriving during the drain: put from the PUBACK hook, so that it is there
            # while 118 backlog batches remain, however fast this machine drains them
            for seq in range(BACKLOG + 1, BACKLOG + LIVE + 1):
                buf.put(enc.encode([(0, seq, 1.0, Quality.GOOD, None)], seq, seq), 1)
            wake.set()

    fwd = Forwarder(buf, MqttUplink(cfg, "s1", "gw-bl"), wake, max_inflight=2, backlog_share=0.5,
                    on_delivered=delivered)

    async with MqttClient(cfg, "bl-sub") as sub:
        await sub.subscribe("bl/s1/gw-bl/data", qos=1)

        async def collect() -> None:
            async for msg in sub.messages:
                assert isinstance(msg.payload, bytes)
                received.append(decode(msg.payload))
                if len(received) == BACKLOG + LIVE:
                    return

        collector = asyncio.create_task(collect())
        task = asyncio.create_task(fwd.run())
        try:
            await eventually(lambda: buf.pending_batches == 0, what="everything delivered")
            async with asyncio.timeout(20):
                await collector
        finally:
            for t in (task, collector):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
    buf.close()

    assert fwd.stats.historical_batches == BACKLOG
    historical = [b.seq for b in received if b.historical]
    live = [b.seq for b in received if not b.historical]
    assert historical == list(range(1, BACKLOG + 1))  # every replayed batch marked, oldest first
    assert live == list(range(BACKLOG + 1, BACKLOG + LIVE + 1))
    assert all(p.historical for b in received if b.historical for p in b.points)
    # live data was not starved: it all went out while the backlog was still draining, and the
    # backlog kept draining meanwhile (it holds its share of the window: 1 of 2 slots)
    first_live, last_live = order.index(False), len(order) - 1 - order[::-1].index(False)
    assert order[last_live + 1:] and all(order[last_live + 1:])
    assert order[first_live:last_live + 1].count(True) >= 1


@pytest.mark.parametrize(("share", "pattern"), [(0.5, [0, 1, 0, 1, 0, 1]), (0.25, [0, 0, 0, 1, 0, 0, 0, 1]),
                                                  (1.0, [1, 1, 1, 1]), (0.0, [0, 0, 0, 0])])
def test_contested_slots_follow_the_share(share: float, pattern: list[int]) -> None:
    split = _Share(share)
    got = []
    for _ in pattern:  # one free slot at a time, both sides waiting
        b = split.backlog_slots(1)
        split.taken(b, 1 - b, competing=True)
        got.append(b)
    assert got == pattern
    assert _Share(0.5).backlog_slots(10) == 5


def test_historical_is_an_influx_field_not_a_tag() -> None:
    p = Point("d.p0", "88.608.5288/X", 5, 1.0, historical=True)
    line = telemetry_line(p, "telemetry", "s", "g").decode()
    tags, fields, _ts = line.split(" ")
    assert "historical" not in tags and "historical=true" in fields
    assert "historical" not in telemetry_line(Point("d.p0", "88.608.5288/X", 5, 1.0), "telemetry", "s", "g").decode()


def test_backlog_keeps_its_share_when_pubacks_free_one_slot_at_a_time(tmp_path: Path) -> None:
    """The window refilled one slot at a time (each PUBACK handled on its own, as on a loaded
    machine): a slot live data takes while the backlog's one slot is in flight still counts as
    contested, so the next free slot goes back to the backlog instead of live data forever."""
    enc = Encoder(_catalog())
    buf = SqliteBuffer(tmp_path / "buf.db")
    for seq in range(1, 21):
        buf.put(enc.encode([(0, seq, 1.0, Quality.GOOD, None)], seq, seq), 1)
    boundary = buf.newest_id
    for seq in range(21, 41):
        buf.put(enc.encode([(0, seq, 1.0, Quality.GOOD, None)], seq, seq), 1)
    fwd = Forwarder(buf, MqttUplink(MqttConfig(), "s1", "gw-bl"), asyncio.Event(), max_inflight=2, backlog_share=0.5)
    share = _Share(0.5)
    inflight, _n, _short = fwd._take(2, boundary, share, 1)  # window of 2: one each
    assert sorted(i.historical for i in inflight) == [False, True]
    kinds = []
    for _ in range(12):  # the oldest in-flight batch is acknowledged, one slot frees, it is refilled
        oldest = inflight.pop(0)  # the list is in publish order
        buf.end(Transaction((oldest.id,), (oldest.payload,), (oldest.npoints,)), [Outcome.DELIVERED])
        busy = any(i.historical for i in inflight)
        items, _n, _short = fwd._take(1, boundary, share, 0 if busy else 1)
        inflight += items
        kinds.append(items[0].historical)
    buf.close()
    assert kinds.count(True) >= 5, kinds  # half the slots, give or take the window's one in flight
