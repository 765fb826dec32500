"""The S7 driver's registration (gateway/driver_registry.py lists it): one device type, ``s7``, polled,
each poll group on its own schedule.  The tag import (TIA Portal XLSX or CSV, with warnings for the
rows of types it does not read) is `edgegw import-tags s7` in gateway/cli.py: the registry's TagImport
reads text, an XLSX export is binary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.s7.config import S7Device
from gateway.core.driver import DriverSpec, PollSettings, RunnerKind

if TYPE_CHECKING:
    from drivers.s7.driver import S7Driver

__all__ = ["SPEC"]


def _make(dev: S7Device, first_index: int, shared: Any) -> S7Driver:
    from drivers.s7.driver import S7Driver

    return S7Driver(dev, first_index)


def _lean(dev: S7Device, shared: Any) -> tuple[S7Device, object]:
    from drivers.s7.driver import lean_device

    return lean_device(dev)


def _make_lean(dev: S7Device, form: Any, first_index: int, shared: Any) -> S7Driver:
    from drivers.s7.driver import S7Driver

    return S7Driver(dev, first_index, form=form)


def _poll_settings(dev: S7Device, driver: Any) -> PollSettings:
    # one connection per CPU: the runner's watchdog bounds a poll, as the driver bounds each request
    return PollSettings(schedules=driver.schedules())


SPEC: DriverSpec[S7Device] = DriverSpec(
    name="s7",
    models=(S7Device,),
    make=_make,
    lean=_lean,
    make_lean=_make_lean,
    runner=RunnerKind.POLLED,
    poll_settings=_poll_settings,
)
