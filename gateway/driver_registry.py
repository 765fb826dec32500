"""The driver registry: the one list of driver packages this gateway knows.

Adding a driver: write ``drivers/<name>/`` with a ``spec.py`` that declares ``SPEC`` (a
:class:`~gateway.core.driver.DriverSpec`), then import it here and add it to ``DRIVERS`` (two lines
in this file, nothing else in gateway/; docs/drivers.md).  Everything else derives from ``DRIVERS``:

- the config union of ``[[devices]]`` (pydantic, discriminated by ``type``): :func:`device_union`;
- the known device types (``unknown device type 'x'; known: ...``) and the error locations that
  leave out the union's tag: :data:`DEVICE_TYPES`;
- driver construction, with the objects a package's devices share: :class:`DriverFactory`;
- the runner kind (polled or pushed) and poll settings: :func:`spec_of`.

No plugins are discovered at run time and no module is imported by name: a driver is registered by
an import, which mypy and import-linter see.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Annotated, Any

from drivers.dlt645.spec import SPEC as DLT645
from drivers.iec104.spec import SPEC as IEC104
from drivers.modbus.spec import SPEC as MODBUS
from drivers.opcua.spec import SPEC as OPCUA
from drivers.s7.spec import SPEC as S7
from gateway.core.contracts import PollingDriver, StreamingDriver
from gateway.core.driver import DriverSpec
from gateway.core.models import Field
from gateway.core.schema import DeviceBase

__all__ = ["BY_TYPE", "DEVICE_TYPES", "DRIVERS", "DriverFactory", "device_union", "spec_of"]

# the driver packages, in the order `edgegw` lists them
DRIVERS: tuple[DriverSpec[Any], ...] = (MODBUS, OPCUA, DLT645, IEC104, S7)


def _by_type(specs: tuple[DriverSpec[Any], ...]) -> dict[str, DriverSpec[Any]]:
    out: dict[str, DriverSpec[Any]] = {}
    for spec in specs:
        for model in spec.models:
            if not issubclass(model, DeviceBase):
                raise TypeError(f"driver {spec.name}: {model.__name__} must derive from gateway.core.schema.DeviceBase")
        for t in spec.types:
            if t in out:
                raise TypeError(f"device type {t!r} is declared by drivers {out[t].name} and {spec.name}")
            out[t] = spec
    return out


BY_TYPE: dict[str, DriverSpec[Any]] = _by_type(DRIVERS)
DEVICE_TYPES: frozenset[str] = frozenset(BY_TYPE)


def device_union(specs: tuple[DriverSpec[Any], ...] = DRIVERS) -> Any:
    """The ``[[devices]]`` item type: the union of every package's models, discriminated by ``type``."""
    models = [m for s in specs for m in s.models]
    if len(models) == 1:
        return models[0]
    return Annotated[functools.reduce(operator.or_, models), Field(discriminator="type")]


def spec_of(dev: DeviceBase) -> DriverSpec[Any]:
    """The registration of a device config's package."""
    spec = BY_TYPE.get(getattr(dev, "type", ""))
    if spec is None or not spec.owns(dev):
        raise TypeError(f"no driver registered for {type(dev).__name__}")
    return spec


class DriverFactory:
    """Makes the drivers of one gateway (or one ``edgegw read``): each package's shared objects (the
    Modbus lines) are made once, on its first device."""

    def __init__(self) -> None:
        self._shared: dict[str, object] = {}

    def for_reload(self, kept: Sequence[DeviceBase]) -> DriverFactory:
        """The factory of the drivers a config reload starts: each package's shared object becomes
        ``keep_shared(old, its kept devices)`` (or is made afresh), so a device that keeps running
        keeps sharing with the new ones (one RS-485 line stays one connection)."""
        new = DriverFactory()
        for spec in DRIVERS:
            if spec.name in self._shared and spec.keep_shared is not None:
                mine = [d for d in kept if spec.owns(d)]
                new._shared[spec.name] = spec.keep_shared(self._shared[spec.name], mine)
        return new

    def _shared_of(self, spec: DriverSpec[Any]) -> object:
        if spec.name not in self._shared:
            self._shared[spec.name] = spec.shared() if spec.shared is not None else None
        return self._shared[spec.name]

    def make(self, dev: DeviceBase, first_index: int, form: object = None) -> PollingDriver | StreamingDriver:
        """``form``: what :meth:`lean` made of the device (``dev`` is then its lean copy), or None."""
        spec = spec_of(dev)
        if form is not None:
            if spec.make_lean is None:
                raise TypeError(f"driver {spec.name} makes no driver from a lean device")
            return spec.make_lean(dev, form, first_index, self._shared_of(spec))
        return spec.make(dev, first_index, self._shared_of(spec))

    def lean(self, dev: DeviceBase) -> tuple[DeviceBase, object]:
        """The device without its points and the compact form its driver is made from (``spec.lean``),
        or the device as it is and None where its package keeps its model."""
        spec = spec_of(dev)
        if spec.lean is None:
            return dev, None
        return spec.lean(dev, self._shared_of(spec))
