"""Controlled clocks for tests: handed to the buffer and the batcher instead of patching :mod:`time`."""

from __future__ import annotations

from gateway.core.clock import SystemClock

__all__ = ["AnotherBoot", "ManualClock"]

S = 1_000_000_000


class ManualClock:
    """A wall clock, a monotonic clock and a boot id that move only when the test says so."""

    def __init__(self, wall_ns: int, mono_ns: int = 1_000 * S, boot: str = "boot-1") -> None:
        self.wall = wall_ns
        self.mono = mono_ns
        self.boot = boot

    def wall_ns(self) -> int:
        return self.wall

    def mono_ns(self) -> int:
        return self.mono

    def boot_id(self) -> str:
        return self.boot

    def advance(self, ns: int) -> None:
        """Time passes: both clocks move on together."""
        self.wall += ns
        self.mono += ns

    def step(self, ns: int) -> None:
        """NTP (or an operator) sets the wall clock: only the wall clock moves, by ``ns`` (signed)."""
        self.wall += ns

    def reboot(self, boot: str, *, wall_ns: int, mono_ns: int = 5 * S) -> None:
        """The system restarts: a new boot id, the monotonic clock starts again near zero, the wall
        clock is whatever the RTC says."""
        self.boot, self.wall, self.mono = boot, wall_ns, mono_ns


class AnotherBoot(SystemClock):
    """The system's clocks, as seen after a reboot (a power cut): only the boot id differs."""

    def __init__(self, boot: str) -> None:
        self._boot = boot

    def boot_id(self) -> str:
        return self._boot
