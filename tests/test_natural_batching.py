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
