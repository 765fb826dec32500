"""Confine this process to a share of a CPU core with a cgroup CPU quota (benchmarks only).

`edgegw bench modbus --cpu-quota 0.25` measures the gateway as it would run on a quarter of a
small box's core.  The simulated PLCs are started first, so they stay outside the quota; then
this process (all its threads) moves into a cgroup of its own whose CFS quota is ``cores`` x the
period:

- cgroup v2 (the unified hierarchy with the ``cpu`` controller): ``cpu.max = "25000 100000"``;
- cgroup v1 (a ``cpu`` hierarchy): ``cpu.cfs_quota_us = 25000`` with ``cpu.cfs_period_us = 100000``.

This is what ``systemd-run -p CPUQuota=25%`` and ``docker run --cpus 0.25`` set.  Needs root (or a
delegated cgroup).  :func:`confine` returns a function that moves the process back and removes the
group; errors are one line (:class:`QuotaError`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["QuotaError", "confine"]

_PERIOD_US = 100_000
_ROOT = Path("/sys/fs/cgroup")


class QuotaError(RuntimeError):
    """The quota cannot be applied here (no cgroup cpu controller, not root)."""


def _hierarchy() -> tuple[Path, str]:
    """(the hierarchy's root directory, "v2" or "v1") that has the cpu controller."""
    for root in (_ROOT, _ROOT / "unified"):
        controllers = root / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            return root, "v2"
    if (_ROOT / "cpu" / "cpu.cfs_quota_us").exists():
        return _ROOT / "cpu", "v1"
    raise QuotaError("no cgroup with the cpu controller is mounted under /sys/fs/cgroup")


def confine(cores: float) -> Callable[[], None]:
    """Move this process into a new cgroup limited to ``cores`` CPUs; return the undo."""
    if not 0.01 <= cores <= (os.cpu_count() or 1):
        raise QuotaError(f"--cpu-quota {cores}: give a share of the machine's cores between 0.01 and "
                         f"{os.cpu_count()}")
    root, version = _hierarchy()
    group = root / f"edgegw-bench-{os.getpid()}"
    quota = int(cores * _PERIOD_US)
    try:
        group.mkdir()
        if version == "v2":
            (group / "cpu.max").write_text(f"{quota} {_PERIOD_US}\n")
        else:
            (group / "cpu.cfs_period_us").write_text(f"{_PERIOD_US}\n")
            (group / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        (group / "cgroup.procs").write_text(f"{os.getpid()}\n")
    except OSError as err:
        _remove(root, group)
        raise QuotaError(f"cannot set a CPU quota in {group} ({err.strerror}); run as root") from None

    def undo() -> None:
        _remove(root, group)

    return undo


def _remove(root: Path, group: Path) -> None:
    if not group.exists():
        return
    try:
        procs = (group / "cgroup.procs").read_text().split()
        for pid in procs:  # back to the root group (a group with members cannot be removed)
            (root / "cgroup.procs").write_text(f"{pid}\n")
        group.rmdir()
    except OSError:
        pass  # left behind is harmless: an empty group under /sys/fs/cgroup, named with the PID
