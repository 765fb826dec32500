"""Buffer ages under wall-clock steps and reboots, with a controlled clock and a real SQLite file.

A batch's age is the monotonic time since it was accepted when it was accepted during this boot,
and its wall-clock age otherwise; a step of the wall clock (NTP) must neither expire fresh data
nor keep stale data.  Expiry runs at most once a second of monotonic time: each check below
advances the clock by at least that much first.
"""

from __future__ import annotations

import io
import sqlite3
import time
import zlib
from pathlib import Path

import pytest

from gateway.buffer import Outcome, SqliteBuffer
from gateway.buffer.export import export
from gateway.buffer.sqlite import FORMAT_VERSION
from tests.clocks import ManualClock
from tests.test_buffer_durability import assert_ledger

S = 1_000_000_000
NOW = 1_796_500_000 * S  # December 2026
MAX_AGE_S = 600


def _buffer(path: Path, clock: ManualClock) -> SqliteBuffer:
    return SqliteBuffer(path, max_age_s=MAX_AGE_S, clock=clock)


def _expired(buf: SqliteBuffer) -> int:
    return buf.counters()["expired_batches"]


def test_forward_step_of_2_h_expires_nothing_fresh_and_old_data_still_expires(tmp_path: Path) -> None:
    """NTP corrects a slow RTC by +2 h: under wall-clock ageing the whole buffer (seconds old) expired."""
    clock = ManualClock(NOW)
    buf = _buffer(tmp_path / "b.db", clock)
    for _ in range(3):
        assert buf.put(b"before the step", 10)
        clock.advance(10 * S)
    clock.step(2 * 3600 * S)
    clock.advance(2 * S)
    assert buf.put(b"after the step", 10)
    buf.maintain()
    assert _expired(buf) == 0 and buf.pending_batches == 4
    assert buf.stats().oldest_age_s == pytest.approx(32.0)  # the monotonic age, not 2 h
    # really old data still expires: 10 minutes after the first batch, by the monotonic clock
    clock.advance((MAX_AGE_S - 32) * S + 1)
    buf.maintain()
    assert (_expired(buf), buf.pending_batches) == (1, 3)
    clock.advance(30 * S)
    buf.maintain()
    assert (_expired(buf), buf.pending_batches) == (3, 1)  # the batch written after the step is younger
    assert buf.counters()["expired_points"] == 30
    assert_ledger(buf)
    buf.close()


def test_backward_step_of_1_h_keeps_no_stale_data(tmp_path: Path) -> None:
    """The wall clock goes back an hour: under wall-clock ageing nothing expired for an extra hour."""
    clock = ManualClock(NOW)
    buf = _buffer(tmp_path / "b.db", clock)
    assert buf.put(b"old", 5)
    clock.advance(300 * S)
    clock.step(-3600 * S)
    assert buf.put(b"younger", 7)
    buf.maintain()
    assert _expired(buf) == 0  # fresh data is not expired either: 300 s is under max_age_s
    clock.advance((MAX_AGE_S - 300) * S + 1)
    buf.maintain()
    assert (_expired(buf), buf.counters()["expired_points"], buf.pending_batches) == (1, 5, 1)
    clock.advance(300 * S)
    buf.maintain()
    assert (_expired(buf), buf.pending_batches) == (2, 0)
    assert_ledger(buf)
    buf.close()


def test_a_step_does_not_hold_back_the_once_a_second_expiry(tmp_path: Path) -> None:
    """The expiry throttle is monotonic: a backward step does not postpone the next check by the step."""
    clock = ManualClock(NOW)
    buf = _buffer(tmp_path / "b.db", clock)
    assert buf.put(b"x", 1)
    clock.step(-3600 * S)
    clock.advance((MAX_AGE_S + 2) * S)
    buf.maintain()
    assert _expired(buf) == 1
    buf.close()


def test_after_a_reboot_batches_of_the_earlier_boot_age_by_wall_time(tmp_path: Path) -> None:
    """The monotonic clock restarts at a reboot: stamps of another boot id cannot be compared with it,
    so their age falls back to the wall clock, while this boot's batches keep monotonic ages."""
    path = tmp_path / "b.db"
    clock = ManualClock(NOW, mono_ns=50_000 * S, boot="boot-A")
    buf = _buffer(path, clock)
    assert buf.put(b"boot A, first", 3)
    clock.advance(200 * S)
    assert buf.put(b"boot A, second", 4)
    buf._db.close()  # the power goes: no clean close

    # back 60 s after the cut, the RTC right; the new boot's monotonic clock starts near zero, far below
    # boot A's stamps (compared with them, both batches would look 14 h in the future: never expired)
    clock.reboot("boot-B", wall_ns=NOW + 260 * S, mono_ns=5 * S)
    buf = _buffer(path, clock)
    assert buf.put(b"boot B", 5)
    buf.maintain()
    assert _expired(buf) == 0
    assert buf.stats().oldest_age_s == pytest.approx(260.0)  # wall-clock age of boot A's first batch
    clock.advance((MAX_AGE_S - 260) * S + 1)
    buf.maintain()
    assert (_expired(buf), buf.counters()["expired_points"]) == (1, 3)
    clock.advance(200 * S)
    buf.maintain()
    assert (_expired(buf), buf.counters()["expired_points"]) == (2, 7)
    # boot B's batch ages by the monotonic clock: a forward step of a day does not touch it
    clock.step(86_400 * S)
    clock.advance(2 * S)
    buf.maintain()
    assert buf.pending_batches == 1
    clock.advance(MAX_AGE_S * S)
    buf.maintain()
    assert (_expired(buf), buf.pending_batches) == (3, 0)
    assert_ledger(buf)
    buf.close()


def test_a_restart_within_the_same_boot_keeps_monotonic_ages(tmp_path: Path) -> None:
    """kill -9 and restart without a reboot: the stamps of the earlier process are of this boot and
    stay monotonic, also after the wall clock stepped in between."""
    path = tmp_path / "b.db"
    clock = ManualClock(NOW)
    buf = _buffer(path, clock)
    for _ in range(5):
        assert buf.put(b"first run", 2)
        clock.advance(S)
    buf._db.close()
    clock.step(3 * 3600 * S)
    clock.advance(10 * S)
    buf = _buffer(path, clock)
    assert buf._boot_first_id == 1  # found by the binary search: every batch is of this boot
    assert buf.put(b"second run", 2)
    buf.maintain()
    assert _expired(buf) == 0 and buf.pending_batches == 6
    clock.advance(MAX_AGE_S * S)
    buf.maintain()
    assert (_expired(buf), buf.pending_batches) == (5, 1)
    buf.close()


def test_reboot_with_the_rtc_at_1970_keeps_earlier_batches_until_the_clock_is_set(tmp_path: Path) -> None:
    """Documented fallback: a batch of an earlier boot is as old as the wall clock says; a clock at
    1970 says "from the future", so it is kept (never expired early) until NTP sets the clock."""
    path = tmp_path / "b.db"
    clock = ManualClock(NOW, boot="boot-A")
    buf = _buffer(path, clock)
    assert buf.put(b"boot A", 3)
    buf.close()
    clock.reboot("boot-B", wall_ns=20 * S)  # the RTC battery is flat
    buf = _buffer(path, clock)
    assert buf.put(b"boot B", 4)
    clock.advance(MAX_AGE_S * S + 1)
    buf.maintain()
    assert buf.counters()["expired_points"] == 4  # boot B's batch expired by its monotonic age
    assert buf.pending_batches == 1
    clock.step(NOW + 3600 * S - clock.wall)  # NTP: an hour after boot A's batch
    clock.advance(2 * S)
    buf.maintain()
    assert (buf.counters()["expired_points"], buf.pending_batches) == (7, 0)
    buf.close()


def _write_v2_buffer(path: Path, created_ns: list[int]) -> None:
    """A buffer as format version 2 wrote it: crc, quarantine and meta, but no boot id nor monotonic stamp."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(
        "CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ns INTEGER NOT NULL, "
        "npoints INTEGER NOT NULL, nbytes INTEGER NOT NULL, payload BLOB NOT NULL, crc INTEGER);"
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "CREATE TABLE quarantine (id INTEGER PRIMARY KEY, created_ns INTEGER NOT NULL, npoints INTEGER NOT NULL, "
        "nbytes INTEGER NOT NULL, payload BLOB NOT NULL, crc INTEGER, reason TEXT NOT NULL, "
        "quarantined_ns INTEGER NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    )
    db.execute("PRAGMA application_id=1162297905")
    db.execute("PRAGMA user_version=2")
    for name in ("accepted_points", "accepted_batches"):
        db.execute("INSERT INTO counters VALUES (?, 0)", (name,))
    for i, created in enumerate(created_ns):
        p = f"v2 batch {i}".encode()
        db.execute("INSERT INTO batches(created_ns, npoints, nbytes, payload, crc) VALUES (?, 2, ?, ?, ?)",
                   (created, len(p), p, zlib.crc32(p)))
        db.execute("UPDATE counters SET value = value + 2 WHERE name = 'accepted_points'")
        db.execute("UPDATE counters SET value = value + 1 WHERE name = 'accepted_batches'")
    db.execute("INSERT INTO meta VALUES ('state', 'closed')")
    db.close()


def test_format_2_buffer_is_readable_as_is_and_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    _write_v2_buffer(path, [NOW - 700 * S, NOW - 100 * S])
    clock = ManualClock(NOW)

    # read-only inspection (stats, export) of the older file works without changing it
    ro = SqliteBuffer(path, readonly=True, clock=clock)
    assert ro.stats().oldest_age_s == pytest.approx(700.0) and ro.pending_batches == 2
    assert [(b.payload, b.boot_id) for b in ro.batches()] == [(b"v2 batch 0", None), (b"v2 batch 1", None)]
    summary = export(ro, io.BytesIO())  # the payloads are not wire batches: two error records, none skipped
    assert summary.batches + summary.errors == 2
    ro.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2

    buf = _buffer(path, clock)
    assert buf._db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION == 3
    cols = {r[1] for r in buf._db.execute("PRAGMA table_info(batches)")}
    assert {"boot_id", "mono_ns"} <= cols
    # the old rows have no monotonic stamp: wall-clock age, as format 2 did
    buf.maintain()
    assert (_expired(buf), buf.pending_batches) == (1, 1)
    assert buf.put(b"v3 batch", 4)
    tx = buf.begin(10)
    assert tx.payloads == (b"v2 batch 1", b"v3 batch")
    buf.end(tx, [Outcome.DELIVERED, Outcome.DELIVERED])
    assert_ledger(buf)
    buf.close()


def test_the_system_clock_stamps_this_boot(tmp_path: Path) -> None:
    """Without an injected clock the buffer stamps the real boot id and CLOCK_BOOTTIME."""
    buf = SqliteBuffer(tmp_path / "b.db")
    before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert buf.put(b"x", 1)
    (row,) = list(buf.batches())
    assert row.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert row.mono_ns is not None and before <= row.mono_ns <= time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    buf.close()
