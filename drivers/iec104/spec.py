"""The IEC 104 driver's registration (gateway/driver_registry.py lists it): a controlling station that
interrogates and then receives what the station pushes (spontaneous data), so its runner is PUSHED."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from drivers.iec104.config import Iec104Device
from drivers.iec104.tags import csv_to_points, points_to_toml
from gateway.core.driver import DriverSpec, RunnerKind, TagImport

if TYPE_CHECKING:
    from drivers.iec104.driver import Iec104Driver

__all__ = ["SPEC"]


def _make(dev: Iec104Device, first_index: int, shared: Any) -> Iec104Driver:
    from drivers.iec104.driver import Iec104Driver

    return Iec104Driver(dev, first_index)


def _lean(dev: Iec104Device, shared: Any) -> tuple[Iec104Device, object]:
    from drivers.iec104.driver import lean_device

    return lean_device(dev)


def _make_lean(dev: Iec104Device, form: Any, first_index: int, shared: Any) -> Iec104Driver:
    from drivers.iec104.driver import Iec104Driver

    return Iec104Driver(dev, first_index, form=form)


def _tag_device(points: Sequence[Any]) -> dict[str, Any]:
    """A minimal station holding the imported points, for the check before anything is written."""
    return {"type": "iec104", "name": "import", "host": "127.0.0.1",
            "points": [p.model_dump(mode="json", exclude_defaults=True, exclude_none=True, by_alias=True)
                       for p in points]}


SPEC: DriverSpec[Iec104Device] = DriverSpec(
    name="iec104",
    models=(Iec104Device,),
    make=_make,
    lean=_lean,
    make_lean=_make_lean,
    runner=RunnerKind.PUSHED,
    tags=TagImport(read=csv_to_points, to_toml=points_to_toml, device=_tag_device),
)
