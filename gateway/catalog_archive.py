"""The catalog messages of wire format v2 this gateway has used, kept next to its buffer.

A buffered batch refers to the catalog of the configuration it was made with.  After a config
change the buffer may still hold batches of the old catalog: the forwarder publishes the archived
catalogs (retained) on connect while a backlog exists, so the ingest can decode them, and the
buffer tools (``edgegw buffer export``) decode stored batches with them.  The folder is
``<buffer stem>-catalogs/`` beside the buffer file; one file per catalog, ``<id>.msgpack``, the
message exactly as published.  The newest ``KEEP`` are kept (by the time they were last used).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gateway.codec import CatalogCache
from gateway.core.errors import CodecError

__all__ = ["KEEP", "archive", "archive_dir", "archived", "learn_archive", "messages"]

KEEP = 16
log = logging.getLogger("edgegw.catalog")


def archive_dir(buffer_path: str | Path) -> Path:
    p = Path(buffer_path)
    return p.with_name(f"{p.stem}-catalogs")


def archive(folder: Path, catalog_id: str, message: bytes) -> None:
    """Keep ``message`` (written atomically; its time refreshed when already there) and prune to KEEP."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{catalog_id}.msgpack"
    if path.exists() and path.read_bytes() == message:
        os.utime(path)
    else:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(message)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    files = sorted(folder.glob("*.msgpack"), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in files[KEEP:]:
        old.unlink(missing_ok=True)


def archived(folder: Path, catalog_id: str) -> bytes | None:
    """The archived message of one catalog, or None (pruned, or unreadable: said in the log)."""
    path = folder / f"{catalog_id}.msgpack"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("Cannot read the archived catalog %s: %s", path, err)
        return None


def messages(folder: Path) -> list[tuple[str, bytes]]:
    """(id, message) of every archived catalog, newest first."""
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.msgpack"), key=lambda f: f.stat().st_mtime, reverse=True)
    out = []
    for f in files:
        try:
            out.append((f.stem, f.read_bytes()))
        except OSError as err:
            log.warning("Cannot read the archived catalog %s: %s", f, err)
    return out


def learn_archive(folder: Path, cache: CatalogCache) -> int:
    """Teach ``cache`` every archived catalog; returns how many were valid."""
    n = 0
    for cid, message in messages(folder):
        try:
            cache.learn(message)
            n += 1
        except CodecError as err:
            log.warning("The archived catalog %s is not valid (%s); batches of it cannot be decoded here.", cid, err)
    return n
