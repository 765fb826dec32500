"""Bad buffer files: start-up refuses with a clear message and never deletes data."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from gateway.buffer import SqliteBuffer
from gateway.buffer.sqlite import FORMAT_VERSION
from gateway.core.errors import BufferCorruptError

__all__: list[str] = []


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_newer_format_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    buf = SqliteBuffer(path)
    assert buf.put(b"keep me", 3)
    buf.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={FORMAT_VERSION + 1}")
    db.close()
    before = _digest(path)
    with pytest.raises(BufferCorruptError, match="newer"):
        SqliteBuffer(path)
    assert _digest(path) == before
    db = sqlite3.connect(path)
    assert db.execute("SELECT payload FROM batches").fetchall() == [(b"keep me",)]
    db.close()


def test_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    db.close()
    before = _digest(path)
    with pytest.raises(BufferCorruptError, match="not an edgegw buffer"):
        SqliteBuffer(path)
    assert _digest(path) == before


def test_garbage_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"\x00not a database at all" * 100)
    before = _digest(path)
    with pytest.raises(BufferCorruptError, match="left untouched"):
        SqliteBuffer(path)
    assert _digest(path) == before


def test_missing_wal_after_kill_keeps_checkpointed_batches(tmp_path: Path) -> None:
    """A WAL lost after a checkpoint costs nothing: committed-and-checkpointed batches remain."""
    path = tmp_path / "buf.db"
    buf = SqliteBuffer(path)
    assert buf.put(b"a", 1)
    buf._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    buf._db.close()  # abandoned, as after kill -9
    Path(f"{path}-wal").unlink(missing_ok=True)
    reopened = SqliteBuffer(path)
    assert reopened.pending_batches == 1
    assert reopened.counters()["accepted_points"] == 1
    reopened.close()
