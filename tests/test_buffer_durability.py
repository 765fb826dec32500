"""Buffer durability modes, age bound, quarantine, format upgrade, corrupt files and export.

Every test ends by checking the ledger: accepted = delivered + dropped_oldest + expired +
quarantined + lost_corrupt + pending.  Nothing disappears uncounted.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest

from gateway.buffer import Outcome, SqliteBuffer
from gateway.buffer.export import export
from gateway.buffer.sqlite import FORMAT_VERSION, SEQ_RESERVE
from gateway.catalog import Catalog, build_catalog
from gateway.cli import main
from gateway.codec import decode, encode
from gateway.config import parse
from gateway.core.clock import SYSTEM_CLOCK
from gateway.core.errors import BufferCorruptError
from gateway.core.point import Quality, SampleBatch
from tests.clocks import AnotherBoot, ManualClock

__all__ = ["assert_ledger", "catalog", "encoded_batch"]

S = 1_000_000_000


def assert_ledger(buf: SqliteBuffer) -> None:
    c = buf.counters()
    gone = sum(
        c[k] for k in ("delivered_points", "dropped_oldest_points", "expired_points", "quarantined_points",
                       "lost_corrupt_points")
    )
    assert c["accepted_points"] == gone + buf.pending_points, c


def catalog() -> Catalog:
    return build_catalog(
        parse(
            {
                "gateway": {"id": "gw-buf", "site": "ordos-plant-03", "enterprise_prefix": "88.608.5288"},
                "devices": [
                    {
                        "type": "modbus_tcp",
                        "name": "pump-1",
                        "host": "127.0.0.1",
                        "points": [
                            {"name": "flow", "table": "input_register", "address": 0, "unit": "m3/h"},
                            {"name": "temp", "table": "input_register", "address": 1, "unit": "degC"},
                        ],
                    }
                ],
            }
        )
    )


def encoded_batch(cat: Catalog, seq: int, npoints: int = 4) -> bytes:
    samples: SampleBatch = [(i % 2, 1_700_000_000_000_000_000 + seq * 1000 + i, float(seq * 10 + i), Quality.GOOD, None)
               for i in range(npoints)]
    return encode(cat, samples, seq, time.time_ns())


def test_interval_durability_counts_points_at_risk_exactly(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    buf = SqliteBuffer(path, durability="interval", sync_interval_ms=60_000)
    assert buf.put(b"x" * 10, 2)
    buf.sync()
    for n in (3, 4, 5):
        assert buf.put(b"x" * 10, n)
    assert (buf.unsynced_points, buf.unsynced_batches) == (12, 3)
    buf.maintain()  # not yet due: nothing synced
    assert buf.unsynced_points == 12

    def seen_from_outside() -> tuple[int, int]:  # what `edgegw buffer stats` shows while the gateway runs
        other = SqliteBuffer(path, durability="interval", readonly=True)
        try:
            st = other.stats()
            return st.unsynced_batches, st.unsynced_points
        finally:
            other.close()

    assert seen_from_outside() == (3, 12)
    buf._last_sync -= 61 * 10**9  # the interval has passed
    syncs = buf.syncs
    buf.maintain()
    assert (buf.unsynced_points, buf.unsynced_batches, buf.syncs) == (0, 0, syncs + 1)
    assert buf.stats().unsynced_points == 0
    assert seen_from_outside() == (0, 0)
    buf.close()


def test_fsync_durability_never_has_points_at_risk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every put returns only after an fsync of the write-ahead log that holds its commit (what
    synchronous=FULL does, done by the buffer outside its lock), and begin() hands out only synced batches."""
    import gateway.buffer.sqlite as mod

    buf = SqliteBuffer(tmp_path / "b.db", durability="fsync")
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(mod.os, "fsync", fsync)  # type: ignore[attr-defined]
    for n in (7, 8):
        assert buf.put(b"x", n)
        assert buf.unsynced_points == 0
        assert len(synced) == n - 6 and synced[-1] == os.path.getsize(f"{buf.path}-wal")  # the whole log
    assert buf.begin(10).ids == (1, 2)
    buf.end(buf.begin(0), [])
    buf._inflight.clear()
    buf._visible_id = 1  # as if the second commit's sync had not returned yet: not handed out
    assert buf.begin(10).ids == (1,)
    buf.close()


@pytest.mark.parametrize(("durability", "system_went_down"),
                         [("fsync", True), ("interval", False), ("interval", True)])
def test_sequence_numbers_are_never_reused_after_an_unclean_stop(
    tmp_path: Path, durability: str, system_went_down: bool
) -> None:
    """A clean stop, a kill -9, or any stop in ``fsync`` mode continues the numbers exactly (every
    offered batch is on disk); an unclean stop of an ``interval`` run that the system did not
    survive (another boot id: a power cut) skips what the run had reserved, since the cut may have
    lost the record of batches already published."""
    path = tmp_path / "b.db"
    buf = SqliteBuffer(path, durability=durability)
    for _ in range(3):
        buf.put(b"x", 1)
    assert buf.last_seq == 3
    buf.close()
    buf = SqliteBuffer(path, durability=durability)
    assert buf.last_seq == 3  # clean stop: no gap
    buf.put(b"y", 1)
    buf._db.close()  # the process dies: no clean close, the 'open' marker stays
    clock = AnotherBoot("the-boot-after-the-cut") if system_went_down else SYSTEM_CLOCK
    buf = SqliteBuffer(path, durability=durability, clock=clock)
    skipped = SEQ_RESERVE if durability == "interval" and system_went_down else 0
    assert buf.last_seq == 4 + skipped and buf.counters()["seq_skipped"] == skipped
    buf.close()
    buf = SqliteBuffer(path, durability=durability, readonly=True)
    assert buf.last_seq == 4 + skipped  # kept for every later start
    buf.close()


def test_max_age_expires_oldest_and_counts_exactly(tmp_path: Path) -> None:
    clock = ManualClock(wall_ns=1_800_000_000 * S)
    buf = SqliteBuffer(tmp_path / "b.db", max_age_s=100, clock=clock)
    for i in range(4):
        assert buf.put(b"old", 10 + i)
        clock.advance(1)
    tx = buf.begin(1)  # the oldest batch is in flight: it is not expired under the sink's feet
    clock.advance(150 * S)
    for _ in range(2):
        assert buf.put(b"new", 1)  # 150 s later: the put expires what is older than 100 s
    clock.advance(1 * S)
    buf.maintain()
    c = buf.counters()
    assert (c["expired_batches"], c["expired_points"]) == (3, 11 + 12 + 13)
    assert buf.pending_batches == 3
    buf.end(tx, [Outcome.DELIVERED])
    assert_ledger(buf)
    buf.close()


def test_checksum_mismatch_is_quarantined_not_sent(tmp_path: Path) -> None:
    buf = SqliteBuffer(tmp_path / "b.db")
    for i in range(3):
        assert buf.put(f"batch-{i}".encode(), 5)
    # flip bytes of the second row behind the buffer's back (bit rot, a bad sector)
    buf._db.execute("UPDATE batches SET payload = ? WHERE id = 2", (b"batch-X",))
    tx = buf.begin(10)
    assert tx.payloads == (b"batch-0", b"batch-2")
    buf.end(tx, [Outcome.DELIVERED] * 2)
    c = buf.counters()
    assert (c["quarantined_batches"], c["quarantined_points"]) == (1, 5)
    [q] = list(buf.batches(quarantined=True))
    assert (q.id, q.payload, q.reason) == (2, b"batch-X", "checksum mismatch")
    assert buf.stats().quarantined_rows == 1
    assert_ledger(buf)
    buf.close()


def _write_v1_buffer(path: Path, payloads: list[bytes]) -> None:
    """A buffer as format version 1 wrote it: no crc column, no quarantine, no meta."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(
        "CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ns INTEGER NOT NULL, "
        "npoints INTEGER NOT NULL, nbytes INTEGER NOT NULL, payload BLOB NOT NULL);"
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    )
    db.execute("PRAGMA application_id=1162297905")
    db.execute("PRAGMA user_version=1")
    for name in ("accepted_points", "accepted_batches", "delivered_points", "delivered_batches",
                 "dropped_oldest_points", "dropped_newest_points"):
        db.execute("INSERT INTO counters VALUES (?, 0)", (name,))
    for p in payloads:
        db.execute("INSERT INTO batches(created_ns, npoints, nbytes, payload) VALUES (?, 4, ?, ?)",
                   (time.time_ns(), len(p), p))
        db.execute("UPDATE counters SET value = value + 4 WHERE name = 'accepted_points'")
        db.execute("UPDATE counters SET value = value + 1 WHERE name = 'accepted_batches'")
    db.close()


def test_format_1_buffer_is_upgraded_and_undecodable_rows_quarantined(tmp_path: Path) -> None:
    cat = catalog()
    good = [encoded_batch(cat, 1), encoded_batch(cat, 3)]
    path = tmp_path / "v1.db"
    _write_v1_buffer(path, [good[0], b"\xc1 not msgpack", good[1]])
    buf = SqliteBuffer(path, validate=decode)
    assert buf._db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
    tx = buf.begin(10)
    assert tx.payloads == tuple(good)  # the damaged legacy row never reaches the sink
    buf.end(tx, [Outcome.DELIVERED, Outcome.DELIVERED])
    c = buf.counters()
    assert (c["quarantined_batches"], c["quarantined_points"], c["delivered_points"]) == (1, 4, 8)
    assert_ledger(buf)
    buf.close()


_KILLED_WRITER = """
import os, signal, sys
from gateway.buffer import SqliteBuffer
buf = SqliteBuffer(sys.argv[1])
for i in range(int(sys.argv[2])):
    assert buf.put(i.to_bytes(4, "big") + b"p" * 1500, 10)
    if i + 1 == int(sys.argv[3]):
        buf._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_writer(path: Path, n: int, checkpoint_after: int = -1) -> None:
    """Write ``n`` batches in a child process, then kill -9 it (the WAL stays behind, as in the field)."""
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path), str(n), str(checkpoint_after)],
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def test_corrupt_file_is_moved_aside_and_readable_batches_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                               ) -> None:
    path = tmp_path / "buffer.db"
    _killed_writer(path, 120, checkpoint_after=120)
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:  # zero one 4 KiB page in the middle of the batches table
        f.seek((pages // 2) * 4096)
        f.write(b"\x00" * 4096)
    with caplog.at_level(logging.ERROR, logger="edgegw.buffer"):
        fresh = SqliteBuffer(path)
    aside = [p for p in tmp_path.iterdir()
             if p.name.startswith("buffer.db.corrupt-") and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].stat().st_size > 0  # kept, never deleted
    assert any("moved aside" in r.getMessage() and str(aside[0]) in r.getMessage() for r in caplog.records)
    c = fresh.counters()
    assert c["corrupt_files_moved"] == 1
    assert 1 <= c["lost_corrupt_batches"] < 10
    assert fresh.pending_batches == 120 - c["lost_corrupt_batches"]
    assert c["lost_corrupt_points"] == 10 * c["lost_corrupt_batches"]
    assert_ledger(fresh)
    # what was salvaged is intact and still in order
    tx = fresh.begin(200)
    ids = [int.from_bytes(p[:4], "big") for p in tx.payloads]
    assert ids == sorted(ids) and len(ids) == fresh.pending_batches
    fresh.close()
    # the moved-aside copy can still be inspected read-only
    assert main(["buffer", "stats", "--file", str(aside[0])]) == 1  # refused with a message, not a traceback
    # export reads around the damage: exactly the batches the salvage kept
    dump = tmp_path / "aside.jsonl"
    assert main(["buffer", "export", "--file", str(aside[0]), "--out", str(dump)]) == 0
    assert len(dump.read_text().splitlines()) == 120 - c["lost_corrupt_batches"]


def test_missing_wal_after_unclean_stop_is_detected_and_start_up_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "buffer.db"
    _killed_writer(path, 8, checkpoint_after=5)  # batches 6-8 live only in the WAL
    Path(f"{path}-wal").unlink()
    with caplog.at_level(logging.ERROR, logger="edgegw.buffer"):
        again = SqliteBuffer(path)
    assert again.pending_batches == 5  # what was checkpointed is all there
    assert again.counters()["wal_missing_starts"] == 1
    assert any(f"{path}-wal" in r.getMessage() and "missing" in r.getMessage() for r in caplog.records)
    again.close()
    # a clean stop leaves no WAL behind: that is normal and not reported
    again = SqliteBuffer(path)
    assert again.counters()["wal_missing_starts"] == 1
    again.close()


def test_kill_leaves_wal_and_restart_recovers_everything(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    _killed_writer(path, 30)
    assert Path(f"{path}-wal").stat().st_size > 0
    again = SqliteBuffer(path)
    assert again.pending_batches == 30
    assert again.counters()["unclean_starts"] == 1
    assert again.counters()["wal_missing_starts"] == 0
    again.close()


def _config_file(tmp_path: Path, db: Path) -> Path:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[buffer]\npath = "{db.as_posix()}"\n')
    return cfg


def test_export_dumps_pending_batches_decoded_without_removing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cat = catalog()
    db = tmp_path / "buffer.db"
    buf = SqliteBuffer(db)
    for seq in (1, 2, 3):
        assert buf.put(encoded_batch(cat, seq), 4)
    buf._db.execute("UPDATE batches SET payload = ? WHERE id = 3", (b"damaged",))
    cfg = _config_file(tmp_path, db)
    out = tmp_path / "dump.jsonl"
    assert main(["buffer", "export", "-c", str(cfg), "--out", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["buffer_id"] for r in recs] == [1, 2, 3]
    assert recs[0]["seq"] == 1 and recs[0]["gateway"] == "gw-buf"
    assert [p["value"] for p in recs[1]["points"]] == [20.0, 21.0, 22.0, 23.0]
    assert recs[1]["points"][0]["key"] == "pump-1.flow" and recs[1]["points"][0]["quality"] == "good"
    assert recs[2]["error"] == "checksum mismatch"
    assert "exported 2 batches (8 points)" in capsys.readouterr().err
    assert main(["buffer", "export", "-c", str(cfg), "--format", "msgpack", "--out", str(out)]) == 0
    unpacked = list(msgpack.Unpacker(io.BytesIO(out.read_bytes()), raw=False))
    assert [r["buffer_id"] for r in unpacked] == [1, 2, 3]
    assert buf.pending_batches == 3 and buf.counters()["quarantined_batches"] == 0  # nothing changed
    sink = io.BytesIO()
    summary = export(buf, sink)
    assert (summary.batches, summary.points, summary.errors) == (2, 8, 1)
    buf.close()


def test_stats_reports_counters_and_is_read_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "buffer.db"
    buf = SqliteBuffer(db)
    assert buf.put(b"x" * 100, 9)
    cfg = _config_file(tmp_path, db)
    before = db.stat().st_mtime_ns, Path(f"{db}-wal").stat().st_size
    assert main(["buffer", "stats", "-c", str(cfg)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["batches"], stats["points"], stats["bytes"]) == (1, 9, 100)
    assert stats["counters"]["accepted_points"] == 9 and stats["format_version"] == FORMAT_VERSION
    assert (db.stat().st_mtime_ns, Path(f"{db}-wal").stat().st_size) == before
    buf.close()


def test_stats_on_a_newer_format_names_the_file_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "buffer.db"
    SqliteBuffer(db).close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version=99")
    con.close()
    assert main(["buffer", "stats", "-c", str(_config_file(tmp_path, db))]) == 1
    err = capsys.readouterr().err
    assert str(db) in err and "newer" in err and "untouched" in err


def test_salvage_interrupted_after_the_move_is_finished_at_next_start(tmp_path: Path) -> None:
    """Killed between moving the damaged file aside and renaming the salvaged copy into place."""
    path = tmp_path / "buffer.db"
    copy = SqliteBuffer(tmp_path / "buffer.db.salvage")
    for _ in range(3):
        assert copy.put(b"kept", 2)
    copy.close()
    (tmp_path / "buffer.db.corrupt-20261126T000000Z").write_bytes(b"the damaged original")
    buf = SqliteBuffer(path)
    assert buf.pending_batches == 3
    assert not (tmp_path / "buffer.db.salvage").exists()
    assert (tmp_path / "buffer.db.corrupt-20261126T000000Z").read_bytes() == b"the damaged original"
    buf.close()


def test_salvage_interrupted_while_copying_is_discarded_and_the_original_kept(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    buf = SqliteBuffer(path)
    assert buf.put(b"original", 4)
    buf.close()
    (tmp_path / "buffer.db.salvage").write_bytes(b"half a copy")
    buf = SqliteBuffer(path)
    assert buf.pending_batches == 1 and buf.pending_points == 4
    assert not (tmp_path / "buffer.db.salvage").exists()
    buf.close()


def test_damage_after_a_clean_stop_is_salvaged_at_start_up_too(tmp_path: Path) -> None:
    """No integrity check after a clean stop, but reading the batches at open still finds the damage."""
    path = tmp_path / "buffer.db"
    buf = SqliteBuffer(path)
    for i in range(120):
        assert buf.put(i.to_bytes(4, "big") + b"p" * 1500, 10)
    buf.close()  # clean: state 'closed', WAL folded in
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:
        f.seek((pages // 2) * 4096)
        f.write(b"\x00" * 4096)
    fresh = SqliteBuffer(path)
    c = fresh.counters()
    assert c["corrupt_files_moved"] == 1 and c["lost_corrupt_batches"] >= 1
    assert fresh.pending_batches == 120 - c["lost_corrupt_batches"]
    assert_ledger(fresh)
    fresh.close()


def test_damage_met_while_running_stops_and_the_next_start_salvages(tmp_path: Path) -> None:
    """The forwarder meets a damaged page: a clear error (the gateway exits 1); the buffer is not marked
    cleanly closed, so the next start checks the file and salvages it instead of crash-looping."""
    path = tmp_path / "buffer.db"
    buf = SqliteBuffer(path)
    for i in range(40):
        assert buf.put(i.to_bytes(4, "big") + b"q" * 6000, 10)  # payloads live on overflow pages
    buf.close()
    buf = SqliteBuffer(path)
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:  # damage behind the running buffer's back
        f.seek((pages // 2) * 4096)
        f.write(b"\x00" * 4096 * (pages // 4))
    other = sqlite3.connect(path, isolation_level=None)  # a write elsewhere: the buffer rereads its pages
    other.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('poke', '1')")
    other.close()
    with pytest.raises(BufferCorruptError, match="restart"):
        for _ in range(40):
            tx = buf.begin(4)
            buf.end(tx, [Outcome.DELIVERED] * len(tx.ids))
    buf.close()
    again = SqliteBuffer(path)
    c = again.counters()
    assert c["corrupt_files_moved"] == 1 and c["lost_corrupt_batches"] >= 1
    assert_ledger(again)
    again.close()


def test_a_buffer_in_a_missing_directory_says_so(tmp_path: Path) -> None:
    from gateway.core.errors import BufferStorageError

    with pytest.raises(BufferStorageError, match=r"the directory .*missing.* does not exist \(create it"):
        SqliteBuffer(tmp_path / "missing" / "buffer.db")
    assert not (tmp_path / "missing").exists()  # not created behind the engineer's back (a typo stays visible)
