"""Start-up progress: each phase of a start is logged with its duration and pace.

A gateway with hundreds of thousands of points takes tens of seconds to read, validate and compile
its configuration; without a word in the log that looks like a hang (and systemd's start timeout
may kill it).  Each phase logs one INFO line when it is done, with the points per second of start-up
so far, and the last one the total.  A start that is quick (under a second so far) logs its phases
at DEBUG only: a small config's start, or its one-line error, stays as terse as it was.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

__all__ = ["StartupProgress"]

log = logging.getLogger("edgegw.startup")


class StartupProgress:
    """Times the phases of one start (wall time of this process: ``time.perf_counter``)."""

    def __init__(self, points: int = 0, *, quiet_below_s: float = 1.0) -> None:
        self.points = points  # known once the config is read
        self.started = time.perf_counter()
        self.phases: list[tuple[str, float]] = []
        self.quiet_below_s = quiet_below_s

    def _level(self) -> int:
        return logging.INFO if time.perf_counter() - self.started >= self.quiet_below_s else logging.DEBUG

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.record(name, time.perf_counter() - t0)

    def record(self, name: str, took: float) -> None:
        """A phase timed elsewhere (``took`` seconds, ending now)."""
        self.phases.append((name, took))
        total = time.perf_counter() - self.started
        extra = {"phase": name, "phase_s": round(took, 3)}
        if self.points and total > 0:
            log.log(self._level(), "Start-up: %s in %.2f s (%s points, %s points/s of start-up so far).", name,
                    took, f"{self.points:,}", f"{self.points / total:,.0f}", extra=extra)
        else:
            log.log(self._level(), "Start-up: %s in %.2f s.", name, took, extra=extra)

    def done(self) -> None:
        total = time.perf_counter() - self.started
        slowest = max(self.phases, key=lambda p: p[1])[0] if self.phases else "-"
        log.log(self._level(), "Start-up done in %.2f s: %s points, %s points/s (slowest phase: %s).", total,
                f"{self.points:,}", f"{self.points / total:,.0f}" if total > 0 else "-", slowest,
                extra={"startup_s": round(total, 3)})
