"""Power-cut fault injection for a process's files (hil/powercut/fsync_snapshot.c).

A kill -9 leaves every written byte in the page cache, so it cannot test what survives a power
cut.  :class:`PowerCut` compiles a small LD_PRELOAD library that snapshots each file of one
directory at every fsync / fdatasync; run the process with :meth:`PowerCut.env`, kill it, and
:meth:`PowerCut.restore` writes the files as the disk would hold them after a power cut at that
moment (the strict model: nothing unsynced survives).  The same library can make a share of the
syncs fail with EIO (:meth:`PowerCut.env` ``eio_permille``), as failing flash does.  Test engineers
can use it on any process whose durability claim they want to check, e.g. ``edgegw run`` with
``durability = "interval"``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hil.services import compile_c

__all__ = ["PowerCut", "build_library"]

SOURCE = Path(__file__).resolve().parent / "powercut" / "fsync_snapshot.c"


def build_library(workdir: Path) -> Path:
    """Compile the preload library into ``workdir``; ServiceUnavailable if gcc is missing."""
    return compile_c(SOURCE, workdir / "fsync_snapshot.so", "-Werror", "-shared", "-fPIC", "-ldl", "-lpthread")


class PowerCut:
    """Watches one directory (``watched``); snapshots land in ``snapshots``."""

    def __init__(self, library: Path, watched: Path, snapshots: Path) -> None:
        self.library = library
        self.watched = watched.resolve()
        self.snapshots = snapshots
        snapshots.mkdir(parents=True, exist_ok=True)

    def baseline(self) -> None:
        """Take the watched files as they are now as durable (e.g. after a clean close)."""
        for f in self.watched.iterdir():
            if f.is_file():
                shutil.copyfile(f, self.snapshots / f.name)

    def env(self, *, eio_permille: int = 0, seed: int | None = None) -> dict[str, str]:
        """The environment for the process under test.  ``eio_permille``: that many of 1,000 syncs
        of the watched files fail with EIO instead (failing storage), seeded by ``seed``."""
        preload = " ".join(p for p in (str(self.library), os.environ.get("LD_PRELOAD", "")) if p)
        env = {
            **os.environ,
            "LD_PRELOAD": preload,
            "EDGEGW_POWERCUT_WATCH": str(self.watched),
            "EDGEGW_POWERCUT_SNAPSHOT": str(self.snapshots),
        }
        if eio_permille:
            env["EDGEGW_FAULT_EIO_PERMILLE"] = str(eio_permille)
        if seed is not None:
            env["EDGEGW_FAULT_EIO_SEED"] = str(seed)
        return env

    def syncs(self) -> list[tuple[str, int]]:
        """(file name, size) of every snapshot taken, in order."""
        log = self.snapshots / "log"
        if not log.exists():
            return []
        return [(name, int(size)) for name, size in (line.rsplit(" ", 1) for line in log.read_text().splitlines())]

    def restore(self, target: Path) -> None:
        """Write the after-the-cut state of the watched files into ``target`` (a fresh directory).

        A file that exists in the watched directory but was never synced is left out: its
        content was never on disk (SQLite's ``-shm`` index is one; SQLite rebuilds it).
        """
        target.mkdir(parents=True)
        for f in self.snapshots.iterdir():
            if f.is_file() and f.name != "log" and not f.name.startswith("."):
                shutil.copyfile(f, target / f.name)
