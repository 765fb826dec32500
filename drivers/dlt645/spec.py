"""The DL/T 645 driver's registration (gateway/driver_registry.py lists it): meters on an RS-485 line
(serial, or through a serial device server), polled in turn; the meters of one line share it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from drivers.dlt645.config import Dlt645Device, Dlt645SerialDevice, Dlt645TcpDevice, line_issues
from gateway.core.driver import DriverSpec, PollSettings, RunnerKind

if TYPE_CHECKING:
    from drivers.dlt645.driver import Dlt645Driver, LinePool

__all__ = ["SPEC"]


def _lines() -> LinePool:
    from drivers.dlt645.driver import LinePool

    return LinePool()


def _keep_lines(old: LinePool, kept: Sequence[Dlt645Device]) -> LinePool:
    """After a reload the lines of the meters that keep running stay open; the others are made afresh."""
    return old.keeping(kept)


def _make(dev: Dlt645Device, first_index: int, lines: LinePool | None) -> Dlt645Driver:
    from drivers.dlt645.driver import Dlt645Driver

    return Dlt645Driver(dev, first_index, lines)


def _lean(dev: Dlt645Device, lines: LinePool | None) -> tuple[Dlt645Device, object]:
    from drivers.dlt645.driver import lean_device

    return lean_device(dev)


def _make_lean(dev: Dlt645Device, form: Any, first_index: int, lines: LinePool | None) -> Dlt645Driver:
    from drivers.dlt645.driver import Dlt645Driver

    return Dlt645Driver(dev, first_index, lines, form=form)


def _poll_settings(dev: Dlt645Device, driver: Any) -> PollSettings:
    # the driver times each request once the line is its own, and suspends a silent meter
    return PollSettings(
        retries=dev.retries,
        watchdog=False,
        suspend_after=dev.suspend_after_timeouts,
        suspended_interval_s=dev.suspended_poll_interval_ms / 1000,
    )


SPEC: DriverSpec[Dlt645Device] = DriverSpec(
    name="dlt645",
    models=(Dlt645SerialDevice, Dlt645TcpDevice),
    make=_make,
    lean=_lean,
    make_lean=_make_lean,
    runner=RunnerKind.POLLED,
    poll_settings=_poll_settings,
    shared=_lines,
    keep_shared=_keep_lines,
    config_issues=line_issues,  # meters sharing a line agree on its settings and have distinct addresses
)
