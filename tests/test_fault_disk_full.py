"""A full disk: the buffer on a small tmpfs follows ``when_full`` exactly, with exact counters.

The buffer directory is a 3 MiB tmpfs, half of it eaten by another file (logs, a core dump...).
Batches are written with the uplink down until the filesystem is full, then well past it; then a
real Forwarder drains the buffer through a real mosquitto to a subscriber.  The oracle is the list
of batches offered: what the subscriber lacks must be exactly what the counters say was dropped,
and the dropped ones must be the ones the policy names (the oldest, or the newest).  Finally the
filesystem is filled to the last byte by the other file: the policy still holds (SQLite's
SQLITE_FULL is handled as a full buffer, not as a crash).

Needs root (mount); skipped otherwise unless CI=true, where a missing capability fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from gateway.buffer import SqliteBuffer
from gateway.config import MqttConfig
from gateway.core.errors import BufferFullError
from gateway.forwarder import Forwarder
from gateway.sinks.mqtt import MqttUplink
from hil.services import Mosquitto
from tests.collector import collect
from tests.conftest import SMALL_FS_BYTES, eventually
from tests.test_buffer_durability import assert_ledger

__all__: list[str] = []

_FS_BYTES = SMALL_FS_BYTES
_BATCH_BYTES = 8 << 10
_POINTS = 10


def _payload(seq: int) -> bytes:
    return seq.to_bytes(4, "big") + os.urandom(_BATCH_BYTES - 4)  # incompressible, unique


def _eat_space(path: Path, leave: int) -> None:
    """Another file grows until only ``leave`` bytes stay free (to the last byte if leave = 0)."""
    with path.open("ab") as f:
        chunk = b"\0" * 4096
        while True:
            st = os.statvfs(path.parent)
            if st.f_bavail * st.f_frsize <= leave:
                return
            try:
                f.write(chunk)
                f.flush()
            except OSError:
                return


def _offer(buf: SqliteBuffer, seqs: range, results: dict[int, str]) -> None:
    for seq in seqs:
        try:
            results[seq] = "accepted" if buf.put(_payload(seq), _POINTS) else "refused"
        except BufferFullError:
            results[seq] = "blocked"


@pytest.mark.integration
@pytest.mark.parametrize("policy", ["block", "drop_newest", "drop_oldest"])
async def test_full_disk_follows_the_policy_exactly(small_fs: Path, mosquitto: Mosquitto, policy: str) -> None:
    filler = small_fs / "other-file"
    _eat_space(filler, leave=_FS_BYTES // 2)
    buf = SqliteBuffer(small_fs / "buffer.db", max_bytes=1 << 30, when_full=policy, disk_reserve_bytes=256 << 10)
    try:
        await _fill_and_drain(small_fs, filler, buf, mosquitto, policy)
    finally:
        buf.close()


async def _fill_and_drain(small_fs: Path, filler: Path, buf: SqliteBuffer, mosquitto: Mosquitto, policy: str) -> None:
    results: dict[int, str] = {}
    # uplink down: write until the filesystem is full, then 40 batches more
    seq = 0
    while "blocked" not in results.values() and "refused" not in results.values() and seq < 1000:
        if policy == "drop_oldest" and buf.counters()["dropped_oldest_batches"]:
            break
        seq += 1
        _offer(buf, range(seq, seq + 1), results)
    assert seq < 1000, "the filesystem never filled up"
    first_full = seq
    _offer(buf, range(seq + 1, seq + 41), results)
    # then someone else takes the last bytes of the disk: SQLite itself now hits ENOSPC
    _eat_space(filler, leave=0)
    assert os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize < _BATCH_BYTES
    _offer(buf, range(seq + 41, seq + 61), results)
    last = seq + 60

    counters = buf.counters()
    accepted = sorted(s for s, r in results.items() if r == "accepted")
    refused = sorted(s for s, r in results.items() if r == "refused")
    blocked = sorted(s for s, r in results.items() if r == "blocked")

    # deliver everything that is left, through the real uplink, to a subscriber
    filler.unlink()  # room for SQLite's deletes
    cfg = MqttConfig(port=mosquitto.port, topic_prefix=f"fulldisk-{policy.replace('_', '-')}")
    uplink = MqttUplink(cfg, "site", "gw")
    async with collect(mosquitto.port, uplink.data_topic, f"fulldisk-sub-{policy}") as received:
        fwd = Forwarder(buf, uplink, asyncio.Event(), max_inflight=8)
        task = asyncio.create_task(fwd.run())
        try:
            await eventually(lambda: buf.pending_batches == 0, timeout=30, what="the buffer to drain")
            await eventually(lambda: len({p[:4] for p in received}) >= len(accepted) - (
                buf.counters()["dropped_oldest_batches"]), timeout=30, what="the subscriber to get everything")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    arrived = {int.from_bytes(p[:4], "big") for p in received}
    missing = sorted(set(accepted) - arrived)
    counters = buf.counters()
    print(f"\n[{policy}] offered {last}, first refusal at {first_full}, accepted {len(accepted)}, "
          f"refused {len(refused)}, blocked {len(blocked)}, arrived {len(arrived)}, missing {len(missing)}; "
          f"counters { {k: v for k, v in counters.items() if v} }")

    assert arrived <= set(accepted)  # nothing that was not accepted ever shows up
    assert counters["accepted_batches"] == len(accepted)
    assert counters["accepted_points"] == _POINTS * len(accepted)
    assert counters["dropped_newest_batches"] == len(refused)
    assert counters["dropped_newest_points"] == _POINTS * len(refused)
    assert counters["dropped_oldest_batches"] == len(missing)
    assert counters["dropped_oldest_points"] == _POINTS * len(missing)
    if policy == "block":
        assert blocked and not refused and not missing  # held back, never dropped
        assert blocked[0] == first_full and accepted == list(range(1, first_full))
        assert buf.full_refusals == len(blocked)
        assert buf.put(_payload(last + 1), _POINTS)  # room again once drained: the producer resumes
    elif policy == "drop_newest":
        assert refused and not missing and not blocked
        assert accepted == list(range(1, first_full))  # the newest were refused, all older kept
        assert refused == list(range(first_full, last + 1))
    else:
        assert missing and not blocked and not refused  # even with the disk full to the last byte
        assert missing == accepted[: len(missing)]  # the oldest went first, nothing else
        assert accepted[-1] >= first_full + 40  # new data kept flowing in while the disk was full
    assert_ledger(buf)
