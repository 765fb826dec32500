"""SQLite (WAL) store-and-forward buffer: one row per encoded batch.

Contract: :meth:`SqliteBuffer.put` returns only once the batch is committed.  In ``fsync``
durability every commit is synced before ``put`` returns (the commit writes the write-ahead log,
then the log is fsynced: what ``synchronous=FULL`` does, but with the connection free for other
threads during the sync), and a batch is visible to :meth:`SqliteBuffer.begin` only once synced:
the batch survives kill -9 and power loss.  In ``interval`` durability commits are written but synced at most every
``sync_interval_ms`` (``synchronous=NORMAL`` plus an explicit fsync of the write-ahead log): the
batch survives kill -9 at once, and power loss once the next sync ran; the points at risk are
counted exactly (:attr:`SqliteBuffer.unsynced_points`).

A batch leaves the buffer only through :meth:`SqliteBuffer.end` with ``Outcome.DELIVERED`` (the
sink confirmed it), or through a counted drop: the ``when_full`` policy (``max_bytes`` or the
filesystem's free space minus ``disk_reserve_bytes``), the age bound ``max_age_s``, or quarantine
of a row whose checksum or content is bad.  The ledger always balances::

    accepted = delivered + dropped_oldest + expired + quarantined + lost_corrupt + pending

A damaged file is never deleted: a file that is not ours is refused untouched; our own file that
SQLite reports corrupt is moved aside as ``<name>.corrupt-<UTC time>`` (with its ``-wal``), the
readable batches are copied into a fresh buffer, and the rest is counted.  See ``docs/buffer.md``.

Ages are monotonic: each batch stores, besides its wall-clock stamp, the boot id and the
``CLOCK_BOOTTIME`` reading at acceptance (:mod:`gateway.core.clock`).  A batch accepted during this
boot is as old as the monotonic clock says, whatever NTP does to the wall clock; a batch of an
earlier boot (or of format 2, which had no such stamp) falls back to its wall-clock age.  Every
interval the buffer waits for (sync, expiry) is monotonic too.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from gateway.core.clock import SYSTEM_CLOCK, Clock
from gateway.core.errors import BufferCorruptError, BufferFullError, BufferStorageError

__all__ = [
    "COUNTERS",
    "FORMAT_VERSION",
    "BufferStats",
    "Outcome",
    "SqliteBuffer",
    "StoredBatch",
    "Transaction",
    "read_batches",
]

log = logging.getLogger("edgegw.buffer")

# 1: no checksum, no quarantine; 2: crc32 per row, quarantine, meta;
# 3: boot id and monotonic stamp per row (ages survive wall-clock steps)
FORMAT_VERSION = 3
_APPLICATION_ID = 0x45474231  # "EGB1": marks the file as an edgegw buffer
_SQLITE_MAGIC = b"SQLite format 3\x00"
_EXPIRE_EVERY_NS = 1_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ns INTEGER NOT NULL,
    npoints INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    boot_id TEXT,
    mono_ns INTEGER,
    payload BLOB NOT NULL,
    crc INTEGER
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    created_ns INTEGER NOT NULL,
    npoints INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    payload BLOB NOT NULL,
    crc INTEGER,
    reason TEXT NOT NULL,
    quarantined_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
# columns added since format 1, with their declarations: an older file gets them at its upgrade
_ADDED_COLUMNS = (("crc", "INTEGER"), ("boot_id", "TEXT"), ("mono_ns", "INTEGER"))
COUNTERS = (
    "accepted_points",
    "accepted_batches",
    "delivered_points",
    "delivered_batches",
    "dropped_oldest_points",
    "dropped_oldest_batches",
    "dropped_newest_points",
    "dropped_newest_batches",
    "expired_points",
    "expired_batches",
    "quarantined_points",
    "quarantined_batches",
    "lost_corrupt_points",
    "lost_corrupt_batches",
    "corrupt_files_moved",
    "wal_missing_starts",
    "unclean_starts",
    "seq_skipped",
)
# ``interval`` durability: batch sequence numbers reserved ahead of use at each sync (see sync())
SEQ_RESERVE = 10_000
# ``fsync`` durability: the delete of delivered batches is synced with the next commit, at the
# latest after this many batches or this long (what a power cut may resend, as duplicates)
DELETE_SYNC_BATCHES = 32
DELETE_SYNC_NS = 100_000_000


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # confirmed by the sink: delete
    RETRY = "retry"  # keep, try again later


@dataclass(frozen=True, slots=True)
class Transaction:
    ids: tuple[int, ...]
    payloads: tuple[bytes, ...]
    npoints: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StoredBatch:
    id: int
    created_ns: int
    npoints: int
    payload: bytes
    crc: int | None
    reason: str | None = None  # why it was quarantined
    boot_id: str | None = None  # the boot during which it was accepted (None: format 2 or older)
    mono_ns: int | None = None  # CLOCK_BOOTTIME at acceptance, meaningful within that boot

    @property
    def checksum_ok(self) -> bool:
        return self.crc is None or _crc(self.payload) == self.crc


@dataclass(frozen=True, slots=True)
class BufferStats:
    path: str
    format_version: int
    durability: str
    sync_interval_ms: int
    when_full: str
    batches: int
    points: int
    bytes: int
    max_bytes: int
    max_age_s: float | None
    oldest_created_ns: int | None
    oldest_age_s: float | None  # monotonic for a batch of this boot, else wall-clock time
    unsynced_points: int
    unsynced_batches: int
    quarantined_rows: int
    quarantined_bytes: int
    file_bytes: int
    wal_bytes: int
    disk_free_bytes: int
    disk_reserve_bytes: int
    counters: dict[str, int] = field(default_factory=dict)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(method: Callable[Concatenate[SqliteBuffer, _P], _R]) -> Callable[Concatenate[SqliteBuffer, _P], _R]:
    """One thread at a time in the buffer's connection and its totals in memory: the gateway runs the
    buffer's work on threads of its own (:mod:`gateway.buffer.writer`) while the status page, the
    metrics and the CLI may read from others.

    A sync the method asked for (``fsync`` durability) runs after the lock is released and before the
    method returns: the slow part of a commit never holds the connection, so reads (the forwarder's
    :meth:`SqliteBuffer.begin`) go on during it."""

    @functools.wraps(method)
    def run(self: SqliteBuffer, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            asks = self._sync_asks
            self._depth += 1
            try:
                result = method(self, *args, **kwargs)
            finally:
                self._depth -= 1
            # a call nested in another (put_many -> put) leaves the sync to the outermost one
            wanted = self._sync_asks != asks and self._depth == 0
            newest, deletes = self._newest_id, self._unsynced_deletes
        if wanted:
            self._durable(newest, deletes)
        return result

    return run


class _Damaged(Exception):
    """SQLite's integrity check found damage in an otherwise readable file."""


def _crc(payload: bytes) -> int:
    return zlib.crc32(payload) & 0xFFFFFFFF


def _is_full(err: sqlite3.Error) -> bool:
    return getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _sidecars(path: Path) -> list[Path]:
    return [Path(f"{path}-wal"), Path(f"{path}-shm")]


def _remove_with_sidecars(path: Path) -> None:
    """Only for the gateway's own temporary salvage copy (never a buffer holding the only copy of data)."""
    for p in (path, *_sidecars(path)):
        p.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_header(path: Path) -> None:
    """Refuse, untouched, a file that is not an SQLite database or not an edgegw buffer.

    Read from the raw header, so a foreign file is never opened read-write by SQLite.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return  # a new, empty file (SQLite writes the header on first commit)
    with path.open("rb") as f:
        head = f.read(100)
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise BufferCorruptError(
            f"buffer file {path} is not an SQLite database (damaged header or another file); it was left "
            f"untouched. If it is the gateway's buffer, move it aside (e.g. `mv {path} {path}.bad`) and start "
            f"again with an empty buffer; otherwise point [buffer].path at another file"
        )
    app_id = int.from_bytes(head[68:72], "big")
    if app_id not in (0, _APPLICATION_ID):
        raise BufferCorruptError(
            f"{path} is not an edgegw buffer (application_id {app_id:#x}); it was left untouched: "
            "point [buffer].path at another file"
        )


class SqliteBuffer:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 1 << 30,
        when_full: str = "drop_oldest",
        durability: str = "fsync",
        sync_interval_ms: int = 500,
        max_age_s: float | None = None,
        disk_reserve_bytes: int = 16 << 20,
        validate: Callable[[bytes], object] | None = None,
        readonly: bool = False,
        startup_check: str = "after_crash",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """Open (or create) the buffer.

        ``validate`` decodes a payload that has no checksum (rows written by format version 1) and
        raises on a bad one; such rows are quarantined.  ``readonly`` opens for inspection
        (``edgegw buffer stats | export``): no schema changes, no markers, no recovery.  ``clock``
        gives wall time (stamps), monotonic time (ages, intervals) and the boot id.
        """
        if when_full not in ("block", "drop_oldest", "drop_newest"):
            raise ValueError(f"unknown when_full policy {when_full!r}")
        if durability not in ("fsync", "interval"):
            raise ValueError(f"unknown durability {durability!r}")
        if startup_check not in ("after_crash", "always", "never"):
            raise ValueError(f"unknown startup_check {startup_check!r}")
        self.startup_check = startup_check
        self.clock = clock
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.durability = durability
        self.sync_interval_ns = sync_interval_ms * 1_000_000
        self.max_age_ns = None if max_age_s is None else int(max_age_s * 1e9)
        self.disk_reserve_bytes = disk_reserve_bytes
        # what bounded the last drop by policy: "max_bytes" or "disk" (the filesystem's free space
        # minus disk_reserve_bytes); in memory only, for the watch's lines (gateway.watch)
        self.full_cause = "max_bytes"
        self.validate = validate
        self.readonly = readonly
        self._lock = threading.RLock()
        # run first by close(): e.g. the writer thread finishing its queued work (gateway.buffer.writer)
        self.on_close: list[Callable[[], None]] = []
        self.writer: object = None  # its BufferWriter, once one runs its work (gateway.buffer.writer)
        # the persistent counters as of the last commit, and the newest id ever accepted, kept in memory
        # so that reading them never waits for a commit (the watch reads them from the event loop)
        self._counts: dict[str, int] = {}
        self._committed_counts: dict[str, int] = {}
        self._newest_id = 0
        self._oldest_row: tuple[int, str | None, int | None] | None = None  # the last oldest batch read
        self._inflight: set[int] = set()
        self.unsynced_points = 0
        self.unsynced_batches = 0
        self._last_id = 0
        self.syncs = 0
        self.full_refusals = 0  # puts refused under ``block`` (nothing is lost: the producer holds)
        self.damaged: str | None = None  # read-only inspection of a damaged file: what SQLite reported
        self._corrupt_seen = False  # damage met while running: the next start must check the file
        self._storage_failed = False  # a write or sync failed (after EIO, what is on disk is unknown): same
        self._last_sync = clock.mono_ns()
        self._unsynced_deletes = 0  # fsync durability: delivered batches deleted, not yet synced
        self._sync_asks = 0  # fsync durability: bumped by each commit that must be synced before returning
        self.checkpoint_pages = 1000  # the WAL is checkpointed about every this many pages (set at open)
        self._depth = 0  # nesting of the public methods holding the lock (_locked)
        self._lazy = False  # the write transaction under way is a delete of delivered batches (no own sync)
        self._visible_id = 0  # fsync durability: begin() hands out batches up to this id (the synced ones)
        self._deletes_since = 0
        self._next_expiry: int | None = None  # monotonic time of the next age check (None: at once)
        self._boot_first_id = 1  # batches from this id on were accepted during this boot
        self._stamped = True  # the file has the boot id / monotonic columns (format 3)
        self._page_size = 4096
        self._bytes = self._points = self._batches = 0
        _check_header(self.path)
        if readonly:
            self._db = self._connect_readonly(self.path)
        else:
            self._db = self._open_writable()
        try:
            self._load_totals()
        except sqlite3.DatabaseError as err:
            if readonly:
                # inspection of a damaged file: export still reads around the damage; stats refuses
                self.damaged = str(err)
                return
            self._db.close()
            # damage the integrity check did not run into (it runs only after an unclean stop)
            self._db = self._recover_corrupt(str(err))
            self._load_totals()

    def _load_totals(self) -> None:
        self._bytes, self._points, self._batches = self._db.execute(
            "SELECT COALESCE(SUM(nbytes), 0), COALESCE(SUM(npoints), 0), COUNT(*) FROM batches"
        ).fetchone()
        # the checkpoint at open synced everything already in the file
        self._last_id = int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()[0])
        self._seq = _seq_of(self._db)
        self._seq_floor = self._seq
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(batches)")}
        self._stamped = {"boot_id", "mono_ns"} <= cols  # a read-only look at an older file may lack them
        self._boot_first_id = self._find_boot_start()
        got = dict(self._db.execute("SELECT name, value FROM counters").fetchall()) if "counters" in {
            r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} else {}
        self._counts = {name: int(got.get(name, 0)) for name in COUNTERS}
        self._committed_counts = dict(self._counts)
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone() if \
            self._has_sequence() else None
        self._newest_id = int(row[0]) if row else 0
        self._visible_id = self._newest_id  # the checkpoint at open synced everything in the file

    def _has_sequence(self) -> bool:
        return self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
        ).fetchone() is not None

    def _find_boot_start(self) -> int:
        """The smallest id from which on every batch was accepted during this boot.

        Batches of this boot are a suffix in id order (ids only grow, a boot never comes back), so a
        binary search over the ids finds the boundary in a few indexed reads: no scan of the file.
        """
        newest = int(self._db.execute(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'batches'), 0)"
        ).fetchone()[0])
        newest = max(newest, self._last_id)
        if not self._stamped:
            return newest + 1
        boot = self.clock.boot_id()
        lo, hi = 1, newest + 1  # ids start at 1
        while lo < hi:
            mid = (lo + hi) // 2
            row = self._db.execute(
                "SELECT boot_id FROM batches WHERE id >= ? ORDER BY id LIMIT 1", (mid,)
            ).fetchone()
            if row is None or row[0] == boot:
                hi = mid  # everything from mid on is of this boot
            else:
                lo = mid + 1
        return lo

    def _skip_reserved_seqs(self, db: sqlite3.Connection) -> None:
        """After an unclean stop of an ``interval``-durability run that the system did not survive
        (power cut, kernel crash: the boot id changed), continue batch sequence numbers above what
        that run had reserved: the cut may have taken the record of batches it had already
        published, and their numbers must never be given to other batches."""
        row = db.execute("SELECT value FROM meta WHERE key = 'seq_floor'").fetchone()
        if row is None:
            return
        boot = db.execute("SELECT value FROM meta WHERE key = 'seq_floor_boot'").fetchone()
        if boot is not None and boot[0] == self.clock.boot_id():
            return  # the system did not go down (kill -9, a crash of the process): every commit is on disk
        seq = _seq_of(db)
        if int(row[0]) > seq:
            db.execute("UPDATE counters SET value = value + ? WHERE name = 'seq_skipped'", (int(row[0]) - seq,))
            log.warning(
                "Buffer %s: unclean stop in interval durability; batch sequence numbers continue at %d "
                "(%d to %d are skipped: a power cut may have lost the record of some of them).",
                self.path, int(row[0]) + 1, seq + 1, int(row[0]),
            )

    @property
    def last_seq(self) -> int:
        """The sequence number of the last batch offered (accepted or dropped as newest): the next
        batch gets ``last_seq + 1``.  Never reused, also after kill -9 and power loss."""
        return self._seq

    # -- opening ---------------------------------------------------------------------------------
    @staticmethod
    def _connect_readonly(path: Path) -> sqlite3.Connection:
        if not path.exists():
            raise BufferCorruptError(f"buffer file {path} does not exist")
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise BufferCorruptError(f"buffer file {path} cannot be read ({err}); it was left untouched") from err
        if version > FORMAT_VERSION:
            db.close()
            raise BufferCorruptError(_newer_message(path, version))
        return db

    def _open_writable(self) -> sqlite3.Connection:
        """Open, check, migrate; a corrupt file of ours is moved aside and salvaged."""
        if not self.path.parent.is_dir():
            raise BufferStorageError(
                f"buffer file {self.path} cannot be created: the directory {self.path.parent} does not exist "
                "(create it, writable by the gateway's user, or set [buffer].path)"
            )
        self._finish_interrupted_recovery()
        existed = self.path.exists() and self.path.stat().st_size > 0
        wal_present = Path(f"{self.path}-wal").exists()
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise BufferStorageError(f"buffer file {self.path} cannot be opened: {err}") from err
        try:
            self._prepare(db, existed, wal_present)
            return db
        except BufferCorruptError:
            db.close()
            raise
        except _Damaged as err:
            db.close()
            return self._recover_corrupt(str(err))
        except sqlite3.DatabaseError as err:
            db.close()
            if _is_full(err):
                raise BufferStorageError(f"buffer file {self.path} cannot be opened: the disk is full") from err
            if not existed:
                raise BufferStorageError(f"buffer file {self.path} cannot be created: {err}") from err
            code = getattr(err, "sqlite_errorcode", None)
            if code is not None and code & 0xFF not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                # an I/O error is not corruption: do not touch the file, let systemd retry
                raise BufferStorageError(
                    f"buffer file {self.path} cannot be opened ({err}); it was left untouched: check the disk "
                    "(kernel log) and the file's permissions"
                ) from err
            return self._recover_corrupt(str(err))

    def _prepare(self, db: sqlite3.Connection, existed: bool, wal_present: bool) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > FORMAT_VERSION:
            raise BufferCorruptError(_newer_message(self.path, version))
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        if tables and app_id != _APPLICATION_ID:
            raise BufferCorruptError(
                f"{self.path} is not an edgegw buffer (application_id {app_id:#x}); it was left untouched: "
                "point [buffer].path at another file"
            )
        self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        db.execute("PRAGMA journal_mode=WAL")
        # fsync durability syncs the write-ahead log itself after each commit (_durable), outside the lock
        db.execute("PRAGMA synchronous=NORMAL")
        # the WAL must stay well inside the disk reserve: checkpoint often enough, and truncate it
        pages = max(16, min(1000, self.disk_reserve_bytes // (4 * self._page_size)))
        db.execute(f"PRAGMA wal_autocheckpoint={pages}")
        self.checkpoint_pages = pages
        db.execute(f"PRAGMA journal_size_limit={max(1 << 16, self.disk_reserve_bytes // 2)}")
        state = None
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()
            state = row[0] if row else None
        unclean = state in ("open", "failed")  # failed: stopped on a storage error, closed its WAL itself
        check = self.startup_check == "always" or (self.startup_check == "after_crash" and unclean)
        if existed and check:
            # after kill -9 or power loss: check the pages before trusting them (a clean stop skips this)
            problems = [r[0] for r in db.execute("PRAGMA quick_check(20)")]
            if problems != ["ok"]:
                raise _Damaged("; ".join(problems))
        db.executescript(_SCHEMA)
        if 0 < version < FORMAT_VERSION:
            # v1 rows keep a NULL crc (validated by decoding when sent); v1 and v2 rows keep a NULL boot
            # id and monotonic stamp (their age is wall-clock age, as before)
            cols = {r[1] for r in db.execute("PRAGMA table_info(batches)")}
            for name, decl in _ADDED_COLUMNS:
                if name not in cols:
                    db.execute(f"ALTER TABLE batches ADD COLUMN {name} {decl}")
            log.info("Buffer %s upgraded from format version %d to %d.", self.path, version, FORMAT_VERSION)
        db.execute(f"PRAGMA application_id={_APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
        db.executemany("INSERT OR IGNORE INTO counters(name, value) VALUES (?, 0)", [(c,) for c in COUNTERS])
        if unclean:
            db.execute("UPDATE counters SET value = value + 1 WHERE name = 'unclean_starts'")
            if not wal_present and state == "open":
                db.execute("UPDATE counters SET value = value + 1 WHERE name = 'wal_missing_starts'")
                log.error(
                    "Buffer %s: the write-ahead log %s-wal is missing after an unclean stop. If it was deleted "
                    "(by hand, by a cleanup job), batches committed after the last checkpoint are gone and their "
                    "number cannot be known; never delete the *-wal or *-shm files of a buffer. (If instead the "
                    "previous process ended on an error without closing the buffer, nothing is lost.) Continuing "
                    "with what the file holds (counter wal_missing_starts).",
                    self.path,
                    self.path,
                )
        if unclean:
            self._skip_reserved_seqs(db)
        db.execute("DELETE FROM meta WHERE key IN ('seq_floor', 'seq_floor_boot')")  # a run writes its own
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('state', 'open')")
        # the 'open' marker goes into the main file, so a later loss of the WAL is detectable
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _recover_corrupt(self, problem: str) -> sqlite3.Connection:
        """Copy what is readable into a fresh buffer, then move the damaged file aside (never delete it).

        Crash-safe at every step: the fresh buffer is built under a temporary name while the damaged
        file stays in place; then the damaged file is renamed aside, then the fresh one into place.
        :meth:`_finish_interrupted_recovery` completes or discards an interrupted run.
        """
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        log.error(
            "Buffer %s is corrupt (%s). Copying every readable batch into a fresh buffer; the damaged file will "
            "be kept as %s.",
            self.path,
            problem,
            aside,
        )
        tmp = self._salvage_path()
        _remove_with_sidecars(tmp)
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            self._prepare(db, existed=False, wal_present=True)
            salvaged, lost_batches, lost_points, old_counters = _salvage(self.path, db)
            db.execute("BEGIN IMMEDIATE")
            for name, value in old_counters.items():
                if name in COUNTERS:
                    db.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))
            if not old_counters:
                db.execute("UPDATE counters SET value = ? WHERE name = 'accepted_points'", (salvaged[1],))
                db.execute("UPDATE counters SET value = ? WHERE name = 'accepted_batches'", (salvaged[0],))
            db.execute("UPDATE counters SET value = value + 1 WHERE name = 'corrupt_files_moved'")
            db.execute("UPDATE counters SET value = value + ? WHERE name = 'lost_corrupt_batches'", (lost_batches,))
            db.execute("UPDATE counters SET value = value + ? WHERE name = 'lost_corrupt_points'", (lost_points,))
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('state', 'closed')")
            db.execute("COMMIT")
        except sqlite3.Error as err:
            raise BufferStorageError(
                f"salvaging buffer {self.path} into {tmp} failed ({err}); nothing was moved"
            ) from err
        finally:
            db.close()  # a clean close folds the WAL into the single file
        try:
            for side, new in zip((self.path, *_sidecars(self.path)), (aside, *_sidecars(aside)), strict=True):
                if side.exists():
                    os.rename(side, new)
            os.rename(tmp, self.path)
            _fsync_dir(self.path.parent)
        except OSError as err:
            raise BufferCorruptError(
                f"buffer file {self.path} is corrupt ({problem}) and could not be replaced ({err}); the "
                f"readable batches are in {tmp}: move the damaged file away by hand and restart"
            ) from err
        log.error(
            "Buffer %s: the damaged file was moved aside to %s (nothing deleted); salvaged %d batches (%d points) "
            "into a fresh buffer; %d batches (%d points) were unreadable (counters lost_corrupt_*).",
            self.path,
            aside,
            salvaged[0],
            salvaged[1],
            lost_batches,
            lost_points,
        )
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._prepare(db, existed=True, wal_present=False)
        return db

    def _salvage_path(self) -> Path:
        return self.path.with_name(f"{self.path.name}.salvage")

    def _finish_interrupted_recovery(self) -> None:
        """A salvage interrupted by a crash: promote a complete copy, or drop a partial one."""
        tmp = self._salvage_path()
        if not tmp.exists():
            return
        if not self.path.exists():
            # killed between moving the damaged file aside and renaming the copy into place
            os.rename(tmp, self.path)
            _fsync_dir(self.path.parent)
            log.warning("Buffer %s: finished an interrupted salvage (the copy %s is now the buffer).", self.path, tmp)
        else:
            # killed while copying: the damaged file is still in place and will be salvaged again
            _remove_with_sidecars(tmp)

    # -- producer side ---------------------------------------------------------------------------
    @_locked
    def put(self, payload: bytes, npoints: int, created_ns: int | None = None) -> bool:
        """Commit one batch.  Returns False when the policy dropped it (counted).

        The batch is stamped with the wall clock (``created_ns``, default now: what export shows) and
        with the boot id and monotonic clock at acceptance, which is what its age is measured with.

        Raises :class:`BufferFullError` under ``block`` when there is no room (the caller keeps the
        batch and retries), and :class:`BufferStorageError` on a disk error (nothing was accepted).
        A full filesystem is a full buffer: the ``when_full`` policy applies, it is not an error.
        """
        size = len(payload)
        created = created_ns if created_ns is not None else self.clock.wall_ns()
        try:
            try:
                accepted = self._put_once(payload, npoints, created, force=False)
            except sqlite3.OperationalError as err:
                if not _is_full(err):
                    raise
                log.warning("Buffer %s: the filesystem is full; applying when_full = %s.", self.path, self.when_full)
                try:
                    if self.when_full == "drop_oldest":
                        accepted = self._free_oldest(size, npoints) and self._put_once(
                            payload, npoints, created, force=False, disk_check=False
                        )
                    else:
                        accepted = self._put_once(payload, npoints, created, force=True)
                except sqlite3.OperationalError as err2:
                    if not _is_full(err2) or self.when_full == "block":
                        raise
                    self._count_drop_newest(npoints)
                    self._offered()
                    return False
        except sqlite3.Error as err:
            if _is_full(err) and self.when_full == "block":
                self.full_refusals += 1
                raise BufferFullError(f"buffer {self.path}: the filesystem is full") from err
            raise self._fatal(err, "write", "; the batch was not accepted") from err
        if accepted:
            self._after_commit(npoints)
        self._offered()
        return accepted

    @_locked
    def put_many(self, batches: Sequence[tuple[bytes, int]], created_ns: int | None = None) -> list[bool]:
        """Commit several batches in one transaction: one sync for all of them (group commit).

        Each batch is handled as :meth:`put` handles it (policy, counters, sequence numbers), in
        order, and the call returns only once every one of them is committed: in ``fsync``
        durability nothing of the group is visible to the forwarder, or acknowledged to anyone,
        before the one sync that covers them all.  Returns one entry per batch (False: dropped,
        counted).  Under ``block`` the batches before the first that does not fit are committed and
        the list is shorter than ``batches`` (the caller keeps the rest and offers it again); when
        not even the first fits, :class:`BufferFullError` is raised as by :meth:`put`.  A full
        filesystem rolls the group back, and its batches are then put one at a time (what
        :meth:`put` does on a full disk).
        """
        if len(batches) <= 1:
            return [self.put(p, n, created_ns) for p, n in batches]
        created = created_ns if created_ns is not None else self.clock.wall_ns()
        results: list[bool] = []
        try:
            with self._write():
                self._expire_locked()
                for payload, npoints in batches:
                    try:
                        results.append(self._insert_locked(payload, npoints, created, force=False))
                    except BufferFullError:
                        if not results:
                            raise
                        break
        except sqlite3.OperationalError as err:
            if not _is_full(err):
                raise self._fatal(err, "write", "; the batches were not accepted") from err
            return self._put_each(batches, created)
        except sqlite3.Error as err:
            raise self._fatal(err, "write", "; the batches were not accepted") from err
        for (_payload, npoints), accepted in zip(batches, results, strict=False):
            if accepted:
                self._after_commit(npoints)
            self._offered()
        return results

    def _put_each(self, batches: Sequence[tuple[bytes, int]], created: int) -> list[bool]:
        results: list[bool] = []
        for payload, npoints in batches:
            try:
                results.append(self.put(payload, npoints, created))
            except BufferFullError:
                if not results:
                    raise
                break
        return results

    def _offered(self) -> None:
        self._seq += 1
        if self._seq >= self._seq_floor and self.durability == "interval":
            self.sync()  # reserves the next sequence numbers before any of them is used

    def _put_once(self, payload: bytes, npoints: int, created: int, *, force: bool, disk_check: bool = True) -> bool:
        with self._write():
            self._expire_locked()
            return self._insert_locked(payload, npoints, created, force=force, disk_check=disk_check)

    def _insert_locked(
        self, payload: bytes, npoints: int, created: int, *, force: bool, disk_check: bool = True
    ) -> bool:
        """Inside a write transaction: make room by the policy, insert, count.  The totals in memory
        move with it (a rollback restores them, see :meth:`_write`), so the next batch of a group
        sees this one."""
        size = len(payload)
        over = self._bytes + size - self.max_bytes
        disk = self._disk_need(size) if disk_check else 0
        need = max(over, disk, size if force else 0)
        if need > 0:
            self.full_cause = "disk" if disk > over or force else "max_bytes"
        if need > 0 and not self._make_room(need, size, npoints):
            return False  # the drop is counted and committed
        cur = self._db.execute(
            "INSERT INTO batches(created_ns, npoints, nbytes, boot_id, mono_ns, payload, crc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (created, npoints, size, self.clock.boot_id(), self.clock.mono_ns(), payload, _crc(payload)),
        )
        self._last_id = int(cur.lastrowid or 0)
        self._newest_id = max(self._newest_id, self._last_id)
        self._bump("accepted_points", npoints)
        self._bump("accepted_batches", 1)
        self._bytes += size
        self._points += npoints
        self._batches += 1
        return True

    def _free_oldest(self, size: int, npoints: int) -> bool:
        """On a truly full filesystem: delete the oldest batches in a transaction of their own, then
        checkpoint, so the insert that follows reuses their pages and the WAL's space."""
        self._db.execute("PRAGMA wal_checkpoint(RESTART)")  # the delete then writes from the WAL's start
        self.full_cause = "disk"
        with self._write():
            room = self._make_room(size + 4 * self._page_size, size, npoints)
        self._db.execute("PRAGMA wal_checkpoint(RESTART)")  # keeps the WAL's space for the insert
        return room

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; on any failure it is rolled back, in memory too."""
        saved = (self._bytes, self._points, self._batches, self._newest_id)
        counts = dict(self._counts)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as err:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            self._bytes, self._points, self._batches, self._newest_id = saved
            self._counts = counts
            self._note(err)
            raise
        self._committed_counts = dict(self._counts)
        if self.durability == "fsync" and not self._lazy:
            self._sync_asks += 1  # synced by the public method before it returns (see _locked)

    def _fatal(self, err: sqlite3.Error, what: str, note: str = "") -> BufferStorageError | BufferCorruptError:
        """The error that stops the gateway (exit 1, systemd restarts it), saying what to expect."""
        self._note(err)
        if self._corrupt_seen:
            return BufferCorruptError(
                f"buffer {self.path}: {what} failed, the file is damaged ({err}); restart the gateway: the "
                "damaged file is then moved aside and its readable batches are kept"
            )
        self._storage_failed = True
        code = getattr(err, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
            note += (
                "; the storage reported an I/O error: check the disk (kernel log, SMART). The gateway stops "
                "so that its supervisor restarts it; the next start checks the buffer file first"
            )
        return BufferStorageError(f"buffer {what} failed ({err}){note}")

    def _note(self, err: BaseException) -> None:
        code = getattr(err, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            self._corrupt_seen = True

    def disk_free_bytes(self) -> int | None:
        """Free bytes on the buffer's filesystem for this process (None when unknown)."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _disk_need(self, size: int) -> int:
        """Bytes to free so that ``size`` fits while keeping ``disk_reserve_bytes`` free on the filesystem."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return 0
        # a row costs its payload spread over overflow pages, written once more into the WAL
        cost = size + size // 8 + 2 * self._page_size
        spare = st.f_bavail * st.f_frsize - self.disk_reserve_bytes
        if spare >= cost:
            return 0
        reusable = int(self._db.execute("PRAGMA freelist_count").fetchone()[0]) * self._page_size
        return max(0, cost - spare - reusable)

    def _make_room(self, need: int, size: int, npoints: int) -> bool:
        if size > self.max_bytes:
            # could never fit, whatever the policy: holding it back under block would stall acquisition
            log.error("Buffer %s: a batch of %d bytes exceeds max_bytes (%d); dropped (dropped_newest_*).",
                      self.path, size, self.max_bytes)
        elif self.when_full == "block":
            self.full_refusals += 1
            raise BufferFullError(f"buffer {self.path} is full ({self._bytes} of {self.max_bytes} bytes)")
        if self.when_full == "drop_newest" or size > self.max_bytes:
            self._bump("dropped_newest_points", npoints)
            self._bump("dropped_newest_batches", 1)
            return False
        # drop_oldest: delete the oldest batches that are not in flight until the new one fits; if even
        # deleting all of them could not make room (the rest is in flight), delete none: only the new
        # batch is lost (docs/buffer.md, "Full with batches in flight")
        if self._bytes - self._inflight_bytes() < need:
            self._bump("dropped_newest_points", npoints)
            self._bump("dropped_newest_batches", 1)
            return False
        freed = 0
        last = 0
        while freed < need:
            rows = self._db.execute(
                "SELECT id, npoints, nbytes FROM batches WHERE id > ? ORDER BY id LIMIT 64", (last,)
            ).fetchall()
            if not rows:
                break
            for rid, n, b in rows:
                last = rid
                if freed >= need:
                    break
                if rid in self._inflight:
                    continue
                self._db.execute("DELETE FROM batches WHERE id = ?", (rid,))
                self._bump("dropped_oldest_points", n)
                self._bump("dropped_oldest_batches", 1)
                freed += b
                self._bytes -= b
                self._points -= n
                self._batches -= 1
        if freed < need:
            self._bump("dropped_newest_points", npoints)
            self._bump("dropped_newest_batches", 1)
            return False
        return True

    def _inflight_bytes(self) -> int:
        if not self._inflight:
            return 0
        ids = sorted(self._inflight)
        row = self._db.execute(
            f"SELECT COALESCE(SUM(nbytes), 0) FROM batches WHERE id IN ({','.join('?' * len(ids))})", ids
        ).fetchone()
        return int(row[0])

    def _count_drop_newest(self, npoints: int) -> None:
        with self._write():
            self._bump("dropped_newest_points", npoints)
            self._bump("dropped_newest_batches", 1)

    def _bump(self, name: str, n: int) -> None:
        """Inside a write transaction (:meth:`_write` restores the copy in memory on a rollback)."""
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (n, name))
        self._counts[name] += n

    # -- durability ------------------------------------------------------------------------------
    def _after_commit(self, npoints: int) -> None:
        if self.durability == "fsync":
            return  # synced before the put returns (_durable), deletes since the last sync with it
        self.unsynced_points += npoints
        self.unsynced_batches += 1
        if self.clock.mono_ns() - self._last_sync >= self.sync_interval_ns:
            self.sync()

    @_locked
    def sync(self) -> None:
        """Make every committed batch survive power loss (``interval`` durability).

        WAL frames are written by each commit; fsync of the WAL file makes them durable (SQLite's
        recovery then replays every committed frame up to the last synced one).
        """
        if self.durability == "fsync" or self.readonly:
            return
        # synced with the batches: after a power cut the next start continues above it
        floor = self._seq + SEQ_RESERVE
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("seq_floor", str(floor)), ("seq_floor_boot", self.clock.boot_id())],
            )
        except sqlite3.Error:  # e.g. a full disk: the floor stays, and the next batch tries again
            floor = self._seq_floor
        self._sync_wal()
        self._last_sync = self.clock.mono_ns()
        self._seq_floor = floor
        self.syncs += 1
        self.unsynced_points = 0
        self.unsynced_batches = 0
        # for `edgegw buffer stats` in another process: batches above this id are not yet synced
        with contextlib.suppress(sqlite3.Error):  # informational; a full disk must not make it fatal
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('synced_id', ?)", (str(self._last_id),))

    @_locked
    def maintain(self) -> None:
        """Periodic duties, called about every 100 ms by the app: sync when due, expire old batches."""
        if self.unsynced_batches and self.clock.mono_ns() - self._last_sync >= self.sync_interval_ns:
            self.sync()
        if self._unsynced_deletes and self.clock.mono_ns() - self._deletes_since >= DELETE_SYNC_NS:
            self._sync_asks += 1
        if self.max_age_ns is not None and self._expiry_due(self.clock.mono_ns()):
            try:
                with self._write():
                    self._expire_locked()
            except sqlite3.Error as err:
                raise self._fatal(err, "expiry") from err

    def _expiry_due(self, mono: int) -> bool:
        return self._next_expiry is None or mono >= self._next_expiry

    def _expire_locked(self) -> None:
        """Drop (and count) batches older than ``max_age_s``, oldest first, at most once a second.

        Batches of earlier boots (a prefix in id order) are aged by the wall clock, the only clock
        two boots share; the batches of this boot by the monotonic clock, so that a wall-clock step
        neither expires fresh data nor keeps stale data.
        """
        if self.max_age_ns is None:
            return
        mono = self.clock.mono_ns()
        if not self._expiry_due(mono):
            return
        self._next_expiry = mono + _EXPIRE_EVERY_NS
        if self._boot_first_id > 1:
            self._expire_range(0, self._boot_first_id, "created_ns", self.clock.wall_ns() - self.max_age_ns)
        self._expire_range(self._boot_first_id - 1, None, "mono_ns", mono - self.max_age_ns)

    def _expire_range(self, after_id: int, before_id: int | None, stamp: str, cutoff: int) -> None:
        """Expire batches with ids in ``(after_id, before_id)`` whose ``stamp`` is below ``cutoff``;
        they are in stamp order, so the walk stops at the first younger one."""
        last = after_id
        upper = before_id if before_id is not None else (1 << 63) - 1
        while True:
            rows = self._db.execute(
                f"SELECT id, {stamp}, npoints, nbytes FROM batches WHERE id > ? AND id < ? ORDER BY id LIMIT 256",
                (last, upper),
            ).fetchall()
            for rid, created, n, b in rows:
                last = rid
                if created is None or created >= cutoff:
                    return  # the rest is younger
                if rid in self._inflight:
                    continue
                self._db.execute("DELETE FROM batches WHERE id = ?", (rid,))
                self._bump("expired_points", n)
                self._bump("expired_batches", 1)
                self._bytes -= b
                self._points -= n
                self._batches -= 1
            if len(rows) < 256:
                return

    # -- consumer side ---------------------------------------------------------------------------
    @_locked
    def begin(self, max_batches: int, *, after_id: int = 0, up_to_id: int | None = None) -> Transaction:
        """The oldest batches not already in flight (FIFO), with ids in ``(after_id, up_to_id]``.

        The id range lets the forwarder serve the backlog (ids up to the newest one at connect
        time) and live data (later ids) as two FIFO queues sharing the uplink.
        A batch released by ``Outcome.RETRY`` comes back first even while later batches are still
        in flight (skipping ids below the highest in-flight one would strand it).  The in-flight
        set is bounded by the uplink window, so over-fetching by its size stays cheap.  A row whose
        checksum (or, for rows without one, whose decoding) fails is quarantined here, so it never
        blocks the forwarder.
        """
        if max_batches <= 0:
            return Transaction((), (), ())
        upper = up_to_id if up_to_id is not None else (1 << 63) - 1
        if self.durability == "fsync":
            upper = min(upper, self._visible_id)  # committed but not yet synced: not yet
        while True:
            try:
                rows = self._db.execute(
                    "SELECT id, payload, npoints, crc FROM batches WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                    (after_id, upper, max_batches + len(self._inflight)),
                ).fetchall()
            except sqlite3.DatabaseError as err:
                self._corrupt_seen = True
                raise BufferCorruptError(
                    f"buffer {self.path} became unreadable ({err}); restart the gateway: the damaged file "
                    "is then moved aside and its readable batches are kept"
                ) from err
            if self._inflight:
                rows = [r for r in rows if r[0] not in self._inflight][:max_batches]
            bad = [(r[0], reason) for r in rows if (reason := self._check_row(r[1], r[3])) is not None]
            if not bad:
                break
            self._quarantine(bad)
        self._inflight.update(r[0] for r in rows)
        return Transaction(tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows))

    def _check_row(self, payload: bytes, crc: int | None) -> str | None:
        if crc is not None:
            return None if _crc(payload) == crc else "checksum mismatch"
        if self.validate is None:
            return None
        try:
            self.validate(payload)
        except ValueError as err:  # CodecError is a ValueError
            return f"undecodable: {err}"
        return None

    def _quarantine(self, bad: list[tuple[int, str]]) -> None:
        now = self.clock.wall_ns()
        moved: list[tuple[int, int, str]] = []
        try:
            with self._write():
                for rid, reason in bad:
                    row = self._db.execute(
                        "DELETE FROM batches WHERE id = ? RETURNING created_ns, npoints, nbytes, payload, crc", (rid,)
                    ).fetchone()
                    if row is None:
                        continue
                    self._db.execute(
                        "INSERT OR REPLACE INTO quarantine(id, created_ns, npoints, nbytes, payload, crc, reason, "
                        "quarantined_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (rid, *row, reason, now),
                    )
                    self._bump("quarantined_points", row[1])
                    self._bump("quarantined_batches", 1)
                    self._bytes -= row[2]
                    self._points -= row[1]
                    self._batches -= 1
                    moved.append((rid, row[1], reason))
        except sqlite3.Error as err:
            raise self._fatal(err, "quarantine") from err
        for rid, n, reason in moved:
            log.error("Buffer %s: batch %d (%d points) is damaged (%s); moved to the quarantine table.",
                      self.path, rid, n, reason)

    @_locked
    def end(self, tx: Transaction, outcomes: list[Outcome]) -> None:
        """Delete delivered batches; release the others for a later retry."""
        done = [i for i, o in zip(tx.ids, outcomes, strict=True) if o is Outcome.DELIVERED]
        lazy = bool(done) and self.durability == "fsync"
        # a delete need not be synced on its own: losing it to a power cut resends a delivered batch
        # (a duplicate), never loses one; the next commit's sync covers it (see _deleted)
        self._lazy = lazy
        try:
            if done:
                with self._write():
                    removed = removed_batches = 0
                    for rid in done:
                        row = self._db.execute(
                            "DELETE FROM batches WHERE id = ? RETURNING npoints, nbytes", (rid,)
                        ).fetchone()
                        if row:
                            removed += row[0]
                            removed_batches += 1
                            self._bytes -= row[1]
                            self._points -= row[0]
                            self._batches -= 1
                    self._bump("delivered_points", removed)
                    self._bump("delivered_batches", removed_batches)
        except sqlite3.Error as err:
            raise self._fatal(err, "delete") from err
        finally:
            self._lazy = False
            self._inflight.difference_update(tx.ids)
        if lazy:
            self._deleted(len(done))

    def _deleted(self, batches: int) -> None:
        """``fsync`` durability: deletes of delivered batches ride on the next commit's sync (one WAL,
        synced as a whole), at the latest once DELETE_SYNC_BATCHES are unsynced or after
        DELETE_SYNC_NS (:meth:`maintain`): what a power cut can resend beyond the in-flight window."""
        if not self._unsynced_deletes:
            self._deletes_since = self.clock.mono_ns()
        self._unsynced_deletes += batches
        if self._unsynced_deletes >= DELETE_SYNC_BATCHES:
            self._sync_asks += 1

    @_locked
    def checkpoint_elsewhere(self) -> None:
        """From now on the caller checkpoints the WAL (on a connection of its own, see
        :class:`gateway.buffer.writer.BufferWriter`): a checkpoint syncs the log and the database file,
        and SQLite's automatic one would run inside a commit, holding the connection meanwhile."""
        self._db.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint_failed(self, err: sqlite3.Error) -> BufferStorageError | BufferCorruptError:
        return self._fatal(err, "checkpoint")

    def _durable(self, newest_id: int, deletes: int) -> None:
        """``fsync`` durability, without the lock: sync the log, then hand out the batches it covers
        (``newest_id``, read under the lock after the commit) and count ``deletes`` as synced."""
        self._sync_wal()
        with self._lock:
            self._visible_id = max(self._visible_id, newest_id)
            self._unsynced_deletes = max(0, self._unsynced_deletes - deletes)
            self.syncs += 1

    def _sync_wal(self) -> None:
        """fsync the write-ahead log: every frame written so far (commits, and deletes that were not
        synced on their own) survives power loss; SQLite's recovery replays committed frames up to the
        last synced one.  The one place the buffer syncs besides SQLite's own commits."""
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        try:
            if fd is not None:
                os.fsync(fd)
        except OSError as err:
            self._storage_failed = True  # what is on disk is unknown: the next start checks the file
            raise BufferStorageError(
                f"buffer sync failed ({err}); the storage reported an error: check the disk (kernel log, SMART). "
                "The gateway stops so that its supervisor restarts it; the next start checks the buffer file first"
            ) from err
        finally:
            if fd is not None:
                os.close(fd)

    # -- inspection ------------------------------------------------------------------------------
    @property
    def newest_id(self) -> int:
        """Id of the newest batch ever accepted (0 for none): ids only grow (AUTOINCREMENT)."""
        return self._newest_id

    @property
    def visible_id(self) -> int:
        """The newest id :meth:`begin` hands out: in ``fsync`` durability the newest synced batch (a
        batch committed on another thread is counted pending at once, and handed out once synced)."""
        return self._visible_id if self.durability == "fsync" else self._newest_id

    @property
    def pending_batches(self) -> int:
        return int(self._batches)

    @property
    def pending_points(self) -> int:
        return int(self._points)

    @property
    def pending_bytes(self) -> int:
        """Payload bytes pending: what ``max_bytes`` bounds."""
        return int(self._bytes)

    def oldest_age_ns(self) -> int | None:
        """Age of the oldest pending batch (monotonic if accepted during this boot), None when empty.

        Never waits for a commit in progress on another thread (the watch asks from the event loop):
        then the oldest batch read last time is aged by the clock now (batches leave only by delivery,
        drops and expiry, so it is at worst a little older than the true oldest)."""
        if self._lock.acquire(blocking=False):
            try:
                return self._oldest()[1]
            finally:
                self._lock.release()
        if self._oldest_row is None or not self._batches:
            return None
        return self._age(*self._oldest_row)

    @property
    def durability_label(self) -> str:
        if self.durability == "fsync":
            return "fsync: every accepted batch survives power loss"
        return f"interval: power loss may lose the points of the last {self.sync_interval_ns // 1_000_000} ms"

    @property
    def inflight_batches(self) -> int:
        return len(self._inflight)

    def counters(self) -> dict[str, int]:
        """The persistent counters as of the last commit (from memory: never waits for a commit in
        progress); a read-only inspection reads the file (another process may be writing it)."""
        if not self.readonly:
            return dict(self._committed_counts)
        got = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {name: int(got.get(name, 0)) for name in COUNTERS}

    @_locked
    def stats(self) -> BufferStats:
        if self.damaged is not None:
            raise BufferCorruptError(
                f"buffer file {self.path} is damaged ({self.damaged}); it was left untouched. `edgegw buffer "
                "export` still dumps every readable batch; the gateway salvages it at start-up (moves it aside, "
                "keeps every readable batch)"
            )
        oldest, oldest_age_ns = self._oldest()
        unsynced = (self.unsynced_batches, self.unsynced_points)
        if self.readonly and self.durability == "interval":
            unsynced = self._unsynced_on_disk()
        qrows, qbytes = self._db.execute("SELECT COUNT(*), COALESCE(SUM(nbytes), 0) FROM quarantine").fetchone()
        try:
            st = os.statvfs(self.path.parent)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = 0
        return BufferStats(
            path=str(self.path),
            format_version=FORMAT_VERSION,
            durability=self.durability,
            sync_interval_ms=self.sync_interval_ns // 1_000_000,
            when_full=self.when_full,
            batches=self.pending_batches,
            points=self.pending_points,
            bytes=int(self._bytes),
            max_bytes=self.max_bytes,
            max_age_s=None if self.max_age_ns is None else self.max_age_ns / 1e9,
            oldest_created_ns=oldest,
            oldest_age_s=None if oldest_age_ns is None else round(oldest_age_ns / 1e9, 3),
            unsynced_points=unsynced[1],
            unsynced_batches=unsynced[0],
            quarantined_rows=int(qrows),
            quarantined_bytes=int(qbytes),
            file_bytes=_file_size(self.path),
            wal_bytes=_file_size(Path(f"{self.path}-wal")),
            disk_free_bytes=free,
            disk_reserve_bytes=self.disk_reserve_bytes,
            counters=self.counters(),
        )

    def _oldest(self) -> tuple[int | None, int | None]:
        """Wall stamp and age of the oldest pending batch (monotonic age if it is of this boot)."""
        stamps = "boot_id, mono_ns" if self._stamped else "NULL, NULL"
        row = self._db.execute(f"SELECT created_ns, {stamps} FROM batches ORDER BY id LIMIT 1").fetchone()
        self._oldest_row = None if row is None else (int(row[0]), row[1], row[2])
        if row is None:
            return None, None
        return int(row[0]), self._age(int(row[0]), row[1], row[2])

    def _age(self, created: int, boot: str | None, mono: int | None) -> int:
        if boot is not None and mono is not None and boot == self.clock.boot_id():
            return self.clock.mono_ns() - int(mono)
        return self.clock.wall_ns() - created

    def _unsynced_on_disk(self) -> tuple[int, int]:
        """(batches, points) the running gateway has committed but not yet synced, from its marker."""
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'synced_id'").fetchone()
        except sqlite3.Error:
            return 0, 0
        if row is None:
            row = ("0",)
        n, p = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(npoints), 0) FROM batches WHERE id > ?", (int(row[0]),)
        ).fetchone()
        return int(n), int(p)

    def batches(self, *, quarantined: bool = False) -> Iterator[StoredBatch]:
        """Every pending (or quarantined) batch, oldest first, without removing anything."""
        # a damaged file may not have told which format it is: let read_batches look
        stamped = self._stamped if self.damaged is None else None
        yield from read_batches(self._db, quarantined=quarantined, stamped=stamped)

    def close(self) -> None:
        for hook in self.on_close:  # outside the lock: a writer thread finishes its queued work first
            hook()
        self.on_close.clear()
        with self._lock:
            self._close()

    def _close(self) -> None:
        if not self.readonly and not self._corrupt_seen:
            # else the 'open' marker stays, and the next start checks the file
            with contextlib.suppress(sqlite3.Error):
                if self._storage_failed:
                    # best effort: the next start checks the file, and knows the WAL was closed, not lost
                    self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('state', 'failed')")
                else:
                    self.sync()
                    self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('state', 'closed')")
        self._db.close()


def _seq_of(db: sqlite3.Connection) -> int:
    """Every batch offered to the buffer was accepted or dropped as newest, and numbers skipped
    after a power cut are counted too: the sum is the last sequence number used."""
    row = db.execute(
        "SELECT COALESCE(SUM(value), 0) FROM counters "
        "WHERE name IN ('accepted_batches', 'dropped_newest_batches', 'seq_skipped')"
    ).fetchone()
    return int(row[0])


def read_batches(
    db: sqlite3.Connection, *, quarantined: bool = False, stamped: bool | None = None
) -> Iterator[StoredBatch]:
    """Every readable row, oldest first.  A damaged page is stepped over id by id: the rows on it are
    skipped, the rows after it are still read (export and salvage of a corrupt file rely on this).

    ``stamped``: whether the batches table has the boot id / monotonic columns (format 3); looked
    up when not given (a file of an older format, read without upgrading it, lacks them)."""
    table = "quarantine" if quarantined else "batches"
    if stamped is None and not quarantined:
        try:
            stamped = {"boot_id", "mono_ns"} <= {r[1] for r in db.execute("PRAGMA table_info(batches)")}
        except sqlite3.DatabaseError:
            stamped = False
    stamps = "boot_id, mono_ns" if stamped and not quarantined else "NULL, NULL"
    cols = f"id, created_ns, npoints, payload, crc, {'reason' if quarantined else 'NULL'}, {stamps}"
    last = -1
    while True:
        try:
            rows = db.execute(f"SELECT {cols} FROM {table} WHERE id > ? ORDER BY id LIMIT 256", (last,)).fetchall()
        except sqlite3.DatabaseError:
            yield from _read_around_damage(db, table, cols, last + 1)
            return
        for row in rows:
            last = row[0]
            yield StoredBatch(*row)
        if len(rows) < 256:
            return


def _read_around_damage(db: sqlite3.Connection, table: str, cols: str, rid: int) -> Iterator[StoredBatch]:
    hi = _first_int(db, ("SELECT seq FROM sqlite_sequence WHERE name = 'batches'", f"SELECT MAX(id) FROM {table}"))
    while hi is not None and rid <= hi:
        try:
            nxt = db.execute(f"SELECT id FROM {table} WHERE id >= ? ORDER BY id LIMIT 1", (rid,)).fetchone()
            if nxt is None:
                return
            rid = int(nxt[0])
            row = db.execute(f"SELECT {cols} FROM {table} WHERE id = ?", (rid,)).fetchone()
        except sqlite3.DatabaseError:
            rid += 1  # on a damaged page: step over it one id at a time
            continue
        rid += 1
        if row is not None:
            yield StoredBatch(*row)


def _first_int(db: sqlite3.Connection, queries: tuple[str, ...]) -> int | None:
    """The first query that answers with a number (a damaged file fails some and not others)."""
    for q in queries:
        try:
            row = db.execute(q).fetchone()
        except sqlite3.Error:
            continue
        if row is not None and row[0] is not None:
            return int(row[0])
    return None


def _newer_message(path: Path, version: int) -> str:
    return (
        f"buffer {path} has format version {version}, newer than this build reads ({FORMAT_VERSION}); "
        "it was left untouched: run the newer gateway to drain it, or point [buffer].path at another file"
    )


def _salvage(aside: Path, db: sqlite3.Connection) -> tuple[tuple[int, int], int, int, dict[str, int]]:
    """Copy every readable batch of a corrupt buffer into ``db``.

    Returns ((batches, points) salvaged, batches lost, points lost, the old counters if readable).
    Lost points are known exactly when the old counters are readable (the ledger gives them);
    otherwise only rows whose header was readable count.
    """
    salvaged_b = salvaged_p = lost_b = lost_p = 0
    old: dict[str, int] = {}
    try:
        src = sqlite3.connect(f"file:{aside}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return (0, 0), 0, 0, {}
    try:
        with contextlib.suppress(sqlite3.Error):
            old = {str(k): int(v) for k, v in src.execute("SELECT name, value FROM counters").fetchall()}
        db.execute("BEGIN IMMEDIATE")
        for row in read_batches(src):
            if not row.checksum_ok:
                lost_b += 1
                lost_p += row.npoints
                continue
            db.execute(
                "INSERT INTO batches(id, created_ns, npoints, nbytes, boot_id, mono_ns, payload, crc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.created_ns, row.npoints, len(row.payload), row.boot_id, row.mono_ns, row.payload,
                 row.crc if row.crc is not None else _crc(row.payload)),
            )
            salvaged_b += 1
            salvaged_p += row.npoints
        db.execute("COMMIT")
    finally:
        src.close()
    if old:
        # the ledger of the old file tells exactly how many points the unreadable rows held
        accounted = sum(
            old.get(k, 0)
            for k in ("delivered_points", "dropped_oldest_points", "expired_points", "quarantined_points",
                      "lost_corrupt_points")
        )
        lost_p = max(lost_p, old.get("accepted_points", 0) - accounted - salvaged_p)
        lost_b = max(
            lost_b,
            old.get("accepted_batches", 0)
            - sum(
                old.get(k, 0)
                for k in ("delivered_batches", "dropped_oldest_batches", "expired_batches", "quarantined_batches",
                          "lost_corrupt_batches")
            )
            - salvaged_b,
        )
    return (salvaged_b, salvaged_p), lost_b, lost_p, old
