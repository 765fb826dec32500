"""The ingest's dead-letter store: what could not be written, kept with its reason, never dropped.

A message (or the points of a message) that InfluxDB can never accept as sent (undecodable,
forged origin, a value or text the store cannot hold, a row it refused) is committed here, synced
to disk, and only then acknowledged at the broker.  Every entry keeps the topic it came on, the
time, the reason and a payload the ingest can read again: the original message, or a wire-format
v1 JSON batch holding only the refused points.  ``edgegw ingest dead-letters list | export |
replay`` works on it; replay runs an entry through the ingest's write path again.

The store is bounded (``dead_letter_max_bytes``).  When it is full nothing more is acknowledged:
the messages wait at the broker, and the ingest says so every minute, until an operator exports
and deletes, or replays, what is there.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import BufferStorageError, GatewayError

__all__ = ["DeadLetter", "DeadLetterFullError", "DeadLetterStore", "StoredDeadLetter"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ns INTEGER NOT NULL,
    topic TEXT NOT NULL,
    kind TEXT NOT NULL,          -- 'message': the whole message as received; 'points': refused points only
    points INTEGER NOT NULL,     -- points the entry holds (0 when the message could not be decoded)
    reason TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""


class DeadLetterFullError(GatewayError):
    """The dead-letter store reached ``dead_letter_max_bytes``: nothing more is acknowledged."""


def _text(s: str) -> str:
    """Topic and reason as storable text (a hostile payload may put lone surrogates in a reason)."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    reason: str
    payload: bytes
    kind: str = "message"
    points: int = 0


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    received_ns: int
    topic: str
    kind: str
    points: int
    reason: str
    payload: bytes


class DeadLetterStore:
    def __init__(self, path: str | Path, max_bytes: int = 1 << 30) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._bytes, self._count = self._totals()
        except (sqlite3.Error, OSError) as err:
            raise BufferStorageError(f"cannot open the dead-letter store {self.path}: {err}") from None

    def _totals(self) -> tuple[int, int]:
        row = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM dead_letters").fetchone()
        return int(row[0]), int(row[1])

    @property
    def count(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, letters: list[DeadLetter], *, replaces: list[int] | None = None) -> None:
        """Commit (synced) ``letters`` and delete ``replaces`` in one transaction."""
        size = sum(len(d.payload) for d in letters)
        if letters and replaces:  # a replay: what it replaces makes room
            size -= self._payload_bytes(replaces)
        if letters and self._bytes + size > self.max_bytes:
            try:  # another process (`edgegw ingest dead-letters replay | delete`) may have made room
                self._bytes, self._count = self._totals()
            except sqlite3.Error as err:
                raise BufferStorageError(f"cannot read the dead-letter store {self.path}: {err}") from None
        if letters and self._bytes + size > self.max_bytes:
            raise DeadLetterFullError(
                f"the dead-letter store {self.path} is full ({self._bytes} of {self.max_bytes} bytes)")
        now = time.time_ns()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO dead_letters (received_ns, topic, kind, points, reason, payload) VALUES (?,?,?,?,?,?)",
                    [(now, _text(d.topic), d.kind, d.points, _text(d.reason), d.payload) for d in letters],
                )
                if replaces:
                    self._db.executemany("DELETE FROM dead_letters WHERE id = ?", [(i,) for i in replaces])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._bytes, self._count = self._totals()
        except sqlite3.Error as err:
            raise BufferStorageError(f"cannot write the dead-letter store {self.path}: {err}") from None

    def _payload_bytes(self, ids: list[int]) -> int:
        try:
            return sum(int(self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM dead_letters WHERE id = ?",
                                            (i,)).fetchone()[0]) for i in set(ids))
        except sqlite3.Error as err:
            raise BufferStorageError(f"cannot read the dead-letter store {self.path}: {err}") from None

    def ids(self) -> list[int]:
        """Every entry's id, oldest first (a snapshot: a replay adds entries while it walks these)."""
        return [int(r[0]) for r in self._db.execute("SELECT id FROM dead_letters ORDER BY id")]

    def entries(self, ids: list[int] | None = None) -> Iterator[StoredDeadLetter]:
        sql = "SELECT id, received_ns, topic, kind, points, reason, payload FROM dead_letters"
        if ids is not None:
            for i in ids:
                for row in self._db.execute(sql + " WHERE id = ?", (i,)):
                    yield StoredDeadLetter(*row)
            return
        last = 0
        while True:  # in pages: a full store is 1 GiB
            rows = self._db.execute(sql + " WHERE id > ? ORDER BY id LIMIT 500", (last,)).fetchall()
            if not rows:
                return
            for row in rows:
                yield StoredDeadLetter(*row)
            last = rows[-1][0]

    def delete(self, ids: list[int]) -> None:
        self.add([], replaces=ids)

    def close(self) -> None:
        self._db.close()
