"""The Modbus driver's registration (gateway/driver_registry.py lists it): its three device types,
how a driver is made and how the gateway's runner polls it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from drivers.modbus.config import (
    ModbusDevice,
    ModbusRtuDevice,
    ModbusRtuTcpDevice,
    ModbusTcpDevice,
    line_issues,
)
from drivers.modbus.tags import csv_to_points, points_to_toml
from gateway.core.driver import DriverSpec, PollSettings, RunnerKind, TagImport

if TYPE_CHECKING:
    from drivers.modbus.driver import LinePool, ModbusDriver

__all__ = ["SPEC"]


def _lines() -> LinePool:
    """One pool per gateway: devices on one serial port or serial device server share its connection."""
    from drivers.modbus.driver import LinePool

    return LinePool()


def _keep_lines(old: LinePool, kept: Sequence[ModbusDevice]) -> LinePool:
    """After a reload: the lines of the devices that keep running stay open (line_issues keeps their
    settings); every other line is made afresh, its settings may have changed with all its devices."""
    return old.keeping(kept)


def _make(dev: ModbusDevice, first_index: int, lines: LinePool | None) -> ModbusDriver:
    from drivers.modbus.driver import ModbusDriver

    return ModbusDriver(dev, first_index, lines)


def _lean(dev: ModbusDevice, lines: LinePool | None) -> tuple[ModbusDevice, object]:
    from drivers.modbus.driver import lean_device

    return lean_device(dev, lines)


def _make_lean(dev: ModbusDevice, layout: Any, first_index: int, lines: LinePool | None) -> ModbusDriver:
    from drivers.modbus.driver import ModbusDriver

    return ModbusDriver(dev, first_index, lines, layout)


def _poll_settings(dev: ModbusDevice, driver: Any) -> PollSettings:
    return PollSettings(
        # the driver times each request itself once the line is its own (shared lines): no watchdog
        schedules=driver.schedules(),
        retries=dev.retries,
        watchdog=False,
        suspend_after=dev.suspend_after_timeouts,
        suspended_interval_s=dev.suspended_poll_interval_ms / 1000,
    )


def _tag_device(points: Sequence[Any]) -> dict[str, Any]:
    """A Modbus TCP device holding imported points (their poll groups are the device's business)."""
    return {
        "type": "modbus_tcp", "name": "import", "host": "127.0.0.1",
        "poll_groups": {p.group: 1000 for p in points if p.group},
        "points": [p.model_dump(mode="json", exclude_defaults=True, exclude_none=True, by_alias=True) for p in points],
    }


SPEC: DriverSpec[ModbusDevice] = DriverSpec(
    name="modbus",
    models=(ModbusTcpDevice, ModbusRtuTcpDevice, ModbusRtuDevice),
    make=_make,
    runner=RunnerKind.POLLED,
    poll_settings=_poll_settings,
    shared=_lines,
    keep_shared=_keep_lines,
    config_issues=line_issues,  # devices sharing a line agree on its settings
    tags=TagImport(read=csv_to_points, to_toml=points_to_toml, device=_tag_device),
    lean=_lean,
    make_lean=_make_lean,
)
