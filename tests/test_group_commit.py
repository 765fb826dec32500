"""Group commit: several batches per transaction (one sync in fsync durability), nothing visible or
acknowledged before that commit, every policy and counter exactly as batch by batch."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.app import GROUP_MAX_BATCHES, Batcher
from gateway.buffer import SqliteBuffer
from gateway.config import BufferConfig
from gateway.core.errors import BufferFullError, BufferStorageError
from gateway.core.point import Quality
from tests.conftest import eventually
from tests.test_buffer_durability import assert_ledger, catalog

__all__: list[str] = []

P = b"x" * 1000


def _commits(buf: SqliteBuffer) -> list[str]:
    """Every COMMIT the buffer's connection runs from now on (in fsync durability each one is followed
    by one sync of the log)."""
    seen: list[str] = []
    buf._db.set_trace_callback(lambda sql: seen.append(sql) if sql.strip().upper() == "COMMIT" else None)
    return seen


def test_a_group_is_one_transaction_with_the_counts_of_single_puts(tmp_path: Path) -> None:
    buf = SqliteBuffer(tmp_path / "b.db", durability="fsync")
    commits = _commits(buf)
    seq = buf.last_seq
    assert buf.put_many([(P, 10)] * 8) == [True] * 8
    assert len(commits) == 1
    c = buf.counters()
    assert (c["accepted_batches"], c["accepted_points"]) == (8, 80)
    assert buf.pending_batches == 8 and buf.pending_bytes == 8 * len(P)
    assert buf.last_seq == seq + 8
    assert buf.begin(100).ids == tuple(range(1, 9))  # in order
    assert_ledger(buf)
    buf.close()


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_a_group_past_the_bound_drops_and_counts_as_batch_by_batch(tmp_path: Path, policy: str) -> None:
    grouped = SqliteBuffer(tmp_path / "g.db", max_bytes=5 * len(P), when_full=policy)
    single = SqliteBuffer(tmp_path / "s.db", max_bytes=5 * len(P), when_full=policy)
    payloads = [(bytes([i]) * 1000, i + 1) for i in range(8)]
    got = grouped.put_many(payloads)
    expected = [single.put(p, n) for p, n in payloads]
    assert got == expected
    assert grouped.counters() == single.counters()
    assert [b.payload for b in grouped.batches()] == [b.payload for b in single.batches()]
    assert grouped.last_seq == single.last_seq == 8
    for b in (grouped, single):
        assert_ledger(b)
        b.close()


def test_block_commits_the_batches_that_fit_and_returns_fewer(tmp_path: Path) -> None:
    buf = SqliteBuffer(tmp_path / "b.db", max_bytes=3 * len(P), when_full="block")
    assert buf.put_many([(P, 1)] * 5) == [True] * 3  # the caller keeps the other two
    assert buf.counters()["accepted_batches"] == 3 and buf.last_seq == 3
    with pytest.raises(BufferFullError):
        buf.put_many([(P, 1)] * 2)
    assert buf.counters()["dropped_newest_batches"] == 0 and buf.last_seq == 3
    buf.close()


def test_a_failure_inside_a_group_accepts_none_of_it(tmp_path: Path) -> None:
    """All or nothing: a batch of the group the storage refuses leaves no other batch of it behind."""
    buf = SqliteBuffer(tmp_path / "b.db")
    buf.put(P, 1)
    # a storage fault on the third insert of the next group (stands in for an I/O error)
    buf._db.execute(
        "CREATE TEMP TRIGGER fail AFTER INSERT ON batches WHEN NEW.npoints = 666 BEGIN SELECT RAISE(ABORT, 'eio'); END"
    )
    with pytest.raises(BufferStorageError):
        buf.put_many([(P, 2), (P, 3), (P, 666), (P, 4)])
    assert buf.counters()["accepted_batches"] == 1 and buf.pending_batches == 1 and buf.pending_points == 1
    buf._db.close()
    other = sqlite3.connect(tmp_path / "b.db")
    assert other.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 1
    other.close()


async def test_the_batcher_groups_commits_when_polls_queue_up(tmp_path: Path) -> None:
    """Polls waiting in the queue (commits behind the incoming rate) are committed several batches
    per transaction; every sample arrives once, in order, in batches of batch_max_points."""
    cat = catalog()
    buf = SqliteBuffer(tmp_path / "b.db", durability="fsync")
    batcher = Batcher(cat, buf, BufferConfig(batch_max_points=4, linger_ms=10_000), asyncio.Event())
    commits = _commits(buf)
    polls = 40
    for tick in range(polls):  # queued before the batcher runs: it is behind from the start
        await batcher.submit([
            (i, 1_700_000_000_000_000_000 + tick * 10 + i, float(tick), Quality.GOOD, None) for i in range(2)
        ])
    task = asyncio.create_task(batcher.run())
    try:
        await eventually(lambda: buf.counters()["accepted_points"] >= 2 * polls, what="every sample committed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    c = buf.counters()
    assert c["accepted_points"] == 2 * polls and c["accepted_batches"] == polls // 2
    assert len(commits) < c["accepted_batches"]  # grouped: fewer transactions (syncs) than batches
    assert len(commits) >= c["accepted_batches"] / GROUP_MAX_BATCHES
    assert [b.npoints for b in buf.batches()] == [4] * (polls // 2)
    assert batcher.seq == buf.last_seq
    buf.close()


def test_deletes_ride_on_the_next_sync_within_a_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync durability: the delete of delivered batches is not synced on its own (a power cut can
    only resend them), but by the next commit, or once 32 batches or 100 ms are unsynced."""
    import gateway.buffer.sqlite as mod
    from gateway.buffer import Outcome
    from tests.clocks import ManualClock, S

    syncs: list[int] = []
    real = os.fsync

    def counting_fsync(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    monkeypatch.setattr(mod.os, "fsync", counting_fsync)  # type: ignore[attr-defined]
    clock = ManualClock(1_800_000_000 * S)
    buf = SqliteBuffer(tmp_path / "b.db", durability="fsync", clock=clock)
    buf.put_many([(P, 1)] * 40)
    assert len(syncs) == 1  # the group's own sync of the log (after its commit)
    syncs.clear()

    def deliver(n: int) -> None:
        tx = buf.begin(n)
        buf.end(tx, [Outcome.DELIVERED] * len(tx.ids))

    deliver(10)
    assert buf._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: the buffer syncs the log itself
    assert syncs == [] and buf._unsynced_deletes == 10
    clock.advance(99_000_000)
    buf.maintain()
    assert syncs == []
    clock.advance(1_000_000)
    buf.maintain()  # 100 ms: synced
    assert len(syncs) == 1 and buf._unsynced_deletes == 0
    deliver(20)
    assert len(syncs) == 1
    buf.put(P, 1)  # its own sync covers the deletes before it
    assert len(syncs) == 2 and buf._unsynced_deletes == 0
    deliver(10)
    deliver(1)
    assert len(syncs) == 2 and buf._unsynced_deletes == 11 and buf.pending_batches == 0
    buf.put_many([(P, 1)] * 40)
    assert len(syncs) == 3 and buf._unsynced_deletes == 0
    deliver(31)
    assert len(syncs) == 3
    deliver(1)  # 32 unsynced: synced at once
    assert len(syncs) == 4 and buf._unsynced_deletes == 0
    assert buf.counters()["delivered_batches"] == 73
    assert_ledger(buf)
    buf.close()
