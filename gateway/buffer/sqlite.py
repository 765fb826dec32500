"""SQLite (WAL) store-and-forward buffer: one row per encoded batch.

Contract: :meth:`SqliteBuffer.put` returns only once the batch is committed (in ``fsync``
durability, synced to disk: it survives kill -9 and power loss; in ``interval`` durability it
survives kill -9).  A batch leaves the buffer only through :meth:`SqliteBuffer.end` with
``Outcome.DELIVERED``, i.e. after the sink confirmed it.  Bounded by ``max_bytes`` with an
explicit ``when_full`` policy; every dropped point is counted in a persistent counter.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import BufferCorruptError, BufferFullError, BufferStorageError

__all__ = ["FORMAT_VERSION", "BufferStats", "Outcome", "SqliteBuffer", "Transaction"]

FORMAT_VERSION = 1
_APPLICATION_ID = 0x45474231  # "EGB1": marks the file as an edgegw buffer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ns INTEGER NOT NULL,
    npoints INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_COUNTERS = (
    "accepted_points",
    "accepted_batches",
    "delivered_points",
    "delivered_batches",
    "dropped_oldest_points",
    "dropped_newest_points",
)


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # confirmed by the sink: delete
    RETRY = "retry"  # keep, try again later


@dataclass(frozen=True, slots=True)
class Transaction:
    ids: tuple[int, ...]
    payloads: tuple[bytes, ...]
    npoints: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BufferStats:
    path: str
    format_version: int
    batches: int
    points: int
    bytes: int
    max_bytes: int
    oldest_created_ns: int | None
    counters: dict[str, int]


class SqliteBuffer:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 1 << 30,
        when_full: str = "drop_oldest",
        durability: str = "fsync",
    ) -> None:
        if when_full not in ("block", "drop_oldest", "drop_newest"):
            raise ValueError(f"unknown when_full policy {when_full!r}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.durability = durability
        self._inflight: set[int] = set()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._open()
        except sqlite3.DatabaseError as err:
            raise BufferCorruptError(
                f"buffer file {self.path} cannot be opened ({err}); it was left untouched: "
                "move it aside to start with an empty buffer, or export it with `edgegw buffer export`"
            ) from err
        self._bytes, self._points, self._batches = self._db.execute(
            "SELECT COALESCE(SUM(nbytes), 0), COALESCE(SUM(npoints), 0), COUNT(*) FROM batches"
        ).fetchone()

    def _open(self) -> None:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and app_id != _APPLICATION_ID:
            raise BufferCorruptError(f"{self.path} is not an edgegw buffer (application_id {app_id:#x}); not touched")
        if version > FORMAT_VERSION:
            raise BufferCorruptError(
                f"buffer {self.path} has format version {version}, newer than this build reads "
                f"({FORMAT_VERSION}); it was left untouched: run the newer gateway to drain it"
            )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'fsync' else 'NORMAL'}")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA application_id={_APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
        db.executemany("INSERT OR IGNORE INTO counters(name, value) VALUES (?, 0)", [(c,) for c in _COUNTERS])

    # -- producer side ---------------------------------------------------------------------------
    def put(self, payload: bytes, npoints: int, created_ns: int | None = None) -> bool:
        """Commit one batch.  Returns False when ``drop_newest`` refused it (counted).

        Raises :class:`BufferFullError` under ``block`` when there is no room, and
        :class:`BufferStorageError` on a disk error (nothing was accepted then).
        """
        size = len(payload)
        created = created_ns if created_ns is not None else time.time_ns()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._bytes + size > self.max_bytes and not self._make_room(size, npoints):
                    self._db.execute("COMMIT")
                    return False
                self._db.execute(
                    "INSERT INTO batches(created_ns, npoints, nbytes, payload) VALUES (?, ?, ?, ?)",
                    (created, npoints, size, payload),
                )
                self._bump("accepted_points", npoints)
                self._bump("accepted_batches", 1)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            raise BufferStorageError(f"buffer write failed ({err}); the batch was not accepted") from err
        self._bytes += size
        self._points += npoints
        self._batches += 1
        return True

    def _make_room(self, size: int, npoints: int) -> bool:
        if self.when_full == "block":
            raise BufferFullError(f"buffer is full ({self._bytes} of {self.max_bytes} bytes)")
        if self.when_full == "drop_newest" or size > self.max_bytes:
            self._bump("dropped_newest_points", npoints)
            return False
        # drop_oldest: delete the oldest batches that are not in flight until the new one fits
        need = self._bytes + size - self.max_bytes
        rows = self._db.execute("SELECT id, npoints, nbytes FROM batches ORDER BY id").fetchall()
        freed = 0
        for rid, n, b in rows:
            if freed >= need:
                break
            if rid in self._inflight:
                continue
            self._db.execute("DELETE FROM batches WHERE id = ?", (rid,))
            self._bump("dropped_oldest_points", n)
            freed += b
            self._bytes -= b
            self._points -= n
            self._batches -= 1
        if freed < need:
            self._bump("dropped_newest_points", npoints)
            return False
        return True

    def _bump(self, name: str, n: int) -> None:
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (n, name))

    # -- consumer side ---------------------------------------------------------------------------
    def begin(self, max_batches: int, *, after_id: int = 0, up_to_id: int | None = None) -> Transaction:
        """The oldest batches not already in flight (FIFO), with ids in ``(after_id, up_to_id]``.

        The id range lets the forwarder serve the backlog (ids up to the newest one at connect
        time) and live data (later ids) as two FIFO queues sharing the uplink.
        A batch released by ``Outcome.RETRY`` comes back first even while later batches are still
        in flight (skipping ids below the highest in-flight one would strand it).  The in-flight
        set is bounded by the uplink window, so over-fetching by its size stays cheap.
        """
        if max_batches <= 0:
            return Transaction((), (), ())
        rows = self._db.execute(
            "SELECT id, payload, npoints FROM batches WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (after_id, up_to_id if up_to_id is not None else (1 << 63) - 1, max_batches + len(self._inflight)),
        ).fetchall()
        if self._inflight:
            rows = [r for r in rows if r[0] not in self._inflight][:max_batches]
        self._inflight.update(r[0] for r in rows)
        return Transaction(tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows))

    def end(self, tx: Transaction, outcomes: list[Outcome]) -> None:
        """Delete delivered batches; release the others for a later retry."""
        done = [(i, n) for i, n, o in zip(tx.ids, tx.npoints, outcomes, strict=True) if o is Outcome.DELIVERED]
        try:
            if done:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    removed = 0
                    removed_bytes = 0
                    for rid, _n in done:
                        row = self._db.execute(
                            "DELETE FROM batches WHERE id = ? RETURNING npoints, nbytes", (rid,)
                        ).fetchone()
                        if row:
                            removed += row[0]
                            removed_bytes += row[1]
                    self._bump("delivered_points", removed)
                    self._bump("delivered_batches", len(done))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._bytes -= removed_bytes
                self._points -= removed
                self._batches -= len(done)
        except sqlite3.Error as err:
            raise BufferStorageError(f"buffer delete failed ({err})") from err
        finally:
            self._inflight.difference_update(tx.ids)

    # -- inspection ------------------------------------------------------------------------------
    @property
    def newest_id(self) -> int:
        """Id of the newest batch ever accepted (0 for none): ids only grow (AUTOINCREMENT)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone()
        return int(row[0]) if row else 0

    @property
    def pending_batches(self) -> int:
        return int(self._batches)

    @property
    def pending_points(self) -> int:
        return int(self._points)

    def counters(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    def stats(self) -> BufferStats:
        oldest = self._db.execute("SELECT MIN(created_ns) FROM batches").fetchone()[0]
        return BufferStats(
            path=str(self.path),
            format_version=FORMAT_VERSION,
            batches=self.pending_batches,
            points=self.pending_points,
            bytes=int(self._bytes),
            max_bytes=self.max_bytes,
            oldest_created_ns=oldest,
            counters=self.counters(),
        )

    def close(self) -> None:
        self._db.close()
