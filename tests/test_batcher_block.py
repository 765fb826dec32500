"""``when_full = block`` holds acquisition back and loses nothing: the batcher keeps a refused chunk
and offers it again once the uplink has freed room (it used to drop the chunk on the floor)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.app import Batcher
from gateway.buffer import Outcome, SqliteBuffer
from gateway.config import BufferConfig
from gateway.core.point import Quality
from tests.conftest import eventually, stop_tasks
from tests.test_buffer_durability import assert_ledger, catalog

__all__: list[str] = []


async def test_block_policy_holds_then_commits_every_sample(tmp_path: Path) -> None:
    cat = catalog()
    buf = SqliteBuffer(tmp_path / "b.db", max_bytes=1500, when_full="block")
    batcher = Batcher(cat, buf, BufferConfig(batch_max_points=5, linger_ms=0), asyncio.Event())
    task = asyncio.create_task(batcher.run())
    total = 0
    try:
        for tick in range(40):
            await batcher.submit([(tick % 2, 1_700_000_000_000_000_000 + tick, float(tick), Quality.GOOD, None)])
            total += 1
        await eventually(lambda: buf.full_refusals > 0, what="the buffer to refuse under block")
        assert buf.counters()["dropped_newest_points"] == 0
        # the uplink drains the buffer a little at a time; the batcher catches up by itself
        for _ in range(200):  # bounded: a lost chunk must fail the test, not hang it
            if buf.counters()["accepted_points"] >= total:
                break
            # a group committed on the writer thread is pending at once, handed out once synced
            await eventually(lambda: buf.visible_id == buf.newest_id, timeout=5, what="the last commit synced")
            tx = buf.begin(2)
            buf.end(tx, [Outcome.DELIVERED] * len(tx.ids))
            await eventually(lambda: buf.pending_batches > 0 or buf.counters()["accepted_points"] >= total,
                             timeout=5, what="the batcher to offer the held chunk again")
    finally:
        await stop_tasks(task)
    c = buf.counters()
    assert c["accepted_points"] == total  # every sample polled was committed, none dropped
    assert c["dropped_newest_points"] == c["dropped_oldest_points"] == 0
    assert_ledger(buf)
    buf.close()
