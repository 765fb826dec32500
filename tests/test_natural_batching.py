"""Natural batching (#14): while the uplink could publish at once, a poll is committed as soon as no
other poll waits, instead of lingering; while the link is busy, polls accumulate up to
``batch_max_points`` or ``linger_ms`` as before."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.app import Batcher
from gateway.buffer import SqliteBuffer
from gateway.config import BufferConfig
from gateway.core.point import Quality, SampleBatch
from tests.conftest import eventually
from tests.test_buffer_durability import catalog

__all__: list[str] = []


def _poll(tick: int) -> SampleBatch:
    return [(i, 1_700_000_000_000_000_000 + tick * 10 + i, float(tick), Quality.GOOD, None) for i in range(2)]


async def test_a_free_link_commits_each_poll_at_once_a_busy_one_lingers(tmp_path: Path) -> None:
    buf = SqliteBuffer(tmp_path / "b.db", durability="fsync")
    free = [True]
    batcher = Batcher(catalog(), buf, BufferConfig(batch_max_points=1000, linger_ms=60_000), asyncio.Event(),
                      link_free=lambda: free[0])
    task = asyncio.create_task(batcher.run())
    try:
        for tick in range(3):  # a linger of a minute, yet each poll is in the buffer at once
            await batcher.submit(_poll(tick))
            await eventually(lambda t=tick: buf.counters()["accepted_batches"] == t + 1, timeout=5,
                             what="the poll committed without lingering")
        free[0] = False  # the link is busy: polls accumulate into one batch
        for tick in range(3, 8):
            await batcher.submit(_poll(tick))
        await eventually(lambda: batcher.queue.empty(), timeout=5, what="the polls taken")
        assert buf.counters()["accepted_batches"] == 3 and len(batcher.pending) == 10
        free[0] = True  # the next poll finds the link free: everything accumulated goes as one batch
        await batcher.submit(_poll(8))
        await eventually(lambda: buf.counters()["accepted_batches"] == 4, timeout=5, what="one grown batch")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [b.npoints for b in buf.batches()] == [2, 2, 2, 12]
    buf.close()


async def test_every_sample_once_in_order_whether_a_batch_is_all_pending_or_a_slice(tmp_path: Path) -> None:
    """A group that is all of ``pending`` in one batch hands that list over (no copy) and starts a new one;
    whole batches sliced off a longer ``pending`` leave the rest: either way the buffer holds every
    sample once, in order, in consecutive sequence numbers."""
    from gateway.codec import decode

    buf = SqliteBuffer(tmp_path / "b.db", durability="fsync")
    free = [True]
    batcher = Batcher(catalog(), buf, BufferConfig(batch_max_points=4, linger_ms=60_000), asyncio.Event(),
                      link_free=lambda: free[0])
    sent: SampleBatch = []
    task = asyncio.create_task(batcher.run())
    try:
        for tick in range(2):  # a free link: each poll is all of pending, one batch of 2
            sent += _poll(tick)
            await batcher.submit(_poll(tick))
            await eventually(lambda t=tick: buf.counters()["accepted_batches"] == t + 1, timeout=5, what="committed")
        free[0] = False  # busy: 5 polls = 10 samples -> whole batches of 4 sliced off, 2 stay pending
        for tick in range(2, 7):
            sent += _poll(tick)
            await batcher.submit(_poll(tick))
        await eventually(lambda: batcher.queue.empty() and buf.counters()["accepted_points"] == 12, timeout=5,
                         what="the whole batches committed")
        assert len(batcher.pending) == 2
        free[0] = True
        sent += _poll(7)
        await batcher.submit(_poll(7))  # 2 pending + 2: all of pending, exactly one batch of 4
        await eventually(lambda: buf.counters()["accepted_points"] == 16, timeout=5, what="the rest committed")
        assert batcher.pending == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stored = [decode(b.payload) for b in buf.batches()]
    assert [b.seq for b in stored] == list(range(1, len(stored) + 1)) and batcher.seq == len(stored)
    assert [len(b.points) for b in stored] == [2, 2, 4, 4, 4]
    assert [(p.ts_ns, p.value) for b in stored for p in b.points] == [(t, v) for _i, t, v, _q, _r in sent]
    buf.close()
