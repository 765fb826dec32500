"""The clocks the gateway measures with: wall time for timestamps, monotonic time for ages.

A timestamp is wall time (UTC ns): it is what the data means and what InfluxDB orders by.  An
age or a timeout is never wall time: NTP steps the wall clock (a box whose RTC was slow by two
hours jumps two hours at once), and an age measured across such a step is wrong by the step.
Ages are measured on ``CLOCK_BOOTTIME`` (monotonic, and unlike ``CLOCK_MONOTONIC`` it keeps
counting while the system is suspended), which only means something within one boot of the
system: anything that stores a monotonic stamp stores the boot id with it
(``/proc/sys/kernel/random/boot_id``), and falls back to wall time for stamps of another boot.

The clock is an object handed to whoever needs it (the buffer, the batcher), so tests drive a
controlled clock instead of patching :mod:`time`.  A leaf module: it imports nothing of the project.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
import uuid
from pathlib import Path
from typing import Protocol

__all__ = [
    "DEFAULT_MIN_VALID_NS",
    "RELEASE_DATE",
    "SYSTEM_CLOCK",
    "Clock",
    "SystemClock",
    "describe_step",
    "ns_of_date",
]

# The day this version was released (bump it with ``gateway.__version__``).  A gateway whose clock
# reads earlier than the software it runs has not been set: the default ``clock_min_valid_time``.
RELEASE_DATE = dt.date(2026, 12, 5)


def ns_of_date(value: dt.date | dt.datetime) -> int:
    """UTC ns of a date (midnight UTC) or of a timezone-aware datetime."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("a datetime needs a UTC offset (e.g. 2026-12-05T00:00:00Z)")
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


DEFAULT_MIN_VALID_NS = ns_of_date(RELEASE_DATE)


class Clock(Protocol):
    """Wall time (UTC ns), monotonic time (ns, boot time) and the id of this boot of the system."""

    def wall_ns(self) -> int: ...

    def mono_ns(self) -> int: ...

    def boot_id(self) -> str: ...


_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


class SystemClock:
    """The system's clocks: ``CLOCK_REALTIME``, ``CLOCK_BOOTTIME`` (``CLOCK_MONOTONIC`` where the
    platform has no boot time) and the Linux boot id."""

    def wall_ns(self) -> int:
        return time.time_ns()

    def mono_ns(self) -> int:
        if _BOOTTIME is not None:
            return time.clock_gettime_ns(_BOOTTIME)
        return time.monotonic_ns()

    def boot_id(self) -> str:
        return _system_boot_id()


SYSTEM_CLOCK = SystemClock()


@functools.cache
def _system_boot_id() -> str:
    """This boot of the system (Linux).  Without one (another OS, a restricted /proc), every process
    counts as a boot of its own: monotonic stamps are then trusted only within the process that
    wrote them, and every unclean start counts as a possible power cut."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"unknown-{uuid.uuid4()}"


def describe_step(step_ns: int) -> str:
    """``forward by 2 h 0 min 0.000 s`` / ``backward by 1.500 s``: a clock step for a log line."""
    direction = "forward" if step_ns >= 0 else "backward"
    s = abs(step_ns) / 1e9
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        text = f"{int(h)} h {int(m)} min {sec:.3f} s"
    elif m:
        text = f"{int(m)} min {sec:.3f} s"
    else:
        text = f"{sec:.3f} s"
    return f"{direction} by {text}"
