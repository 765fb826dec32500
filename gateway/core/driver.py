"""What a driver package declares to be registered: one :class:`DriverSpec` per package.

A driver package ``drivers/<name>/`` declares, in ``drivers/<name>/spec.py``, its config models (each
with a ``type: Literal[...]`` field), how a driver is made from a device config, and how it runs:
``POLLED`` (the gateway's runner reads it on the device's cadence) or ``PUSHED`` (the device pushes
data through ``stream()``).  The gateway derives everything else from the list of specs in
``gateway/driver_registry.py``: the config union, the known device types, error locations, driver
construction and runner set-up.  See docs/drivers.md.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.core.contracts import PollingDriver, Schedule, StreamingDriver
from gateway.core.errors import ConfigIssue
from gateway.core.schema import DeviceBase, PointBase

__all__ = ["DriverSpec", "PollSettings", "RunnerKind", "TagImport"]


class RunnerKind(enum.Enum):
    POLLED = "polled"  # a PollingDriver: the gateway reads it every poll_interval_ms
    PUSHED = "pushed"  # a StreamingDriver: the device pushes (subscriptions, spontaneous data)


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How the gateway's DeviceRunner polls one device; the defaults fit most drivers.

    ``schedules``: poll groups with their own intervals, each a read function (None: ``read()`` every
    ``poll_interval_ms``); ``retries``: immediate retries of a failed poll; ``watchdog``: the runner
    cancels a read that overruns ``timeout_ms`` (off for a driver that times each request itself);
    ``suspend_after``: timeouts in a row after which a silent device is polled at
    ``suspended_interval_s`` only (0: never)."""

    schedules: list[Schedule] | None = None
    retries: int = 0
    watchdog: bool = True
    suspend_after: int = 0
    suspended_interval_s: float = 10.0


@dataclass(frozen=True, slots=True)
class TagImport:
    """``edgegw import-tags <driver name> FILE``: the engineers' tag list -> ``[[devices.points]]`` TOML.

    ``read(text, source, lines, row_issues)``: the point models of the good rows, appending each
    point's line number to ``lines`` and the problems of single rows, located (``tags.csv:12:
    address``), to ``row_issues`` (so that the good rows are checked together in the same run); a
    problem of the list as a whole (a missing column) raises ConfigError;
    ``to_toml(points)``: the TOML to paste under a device; ``device(points)``: a minimal ``[[devices]]``
    entry (a dict, as in TOML) holding them, which the gateway checks as ``edgegw check`` would."""

    read: Callable[[str, str, list[int], list[ConfigIssue]], Sequence[PointBase]]
    to_toml: Callable[[Sequence[Any]], str]
    device: Callable[[Sequence[Any]], dict[str, Any]]


D = TypeVar("D", bound=DeviceBase)


@dataclass(frozen=True)
class DriverSpec(Generic[D]):
    """One driver package's registration.

    - ``name``: the package's name (``drivers/<name>``), used in messages;
    - ``models``: its device config models; each has ``type: Literal["..."]`` (one or more type names);
    - ``make(device, first_index, shared)``: the driver for one device; ``first_index`` is the catalog
      index of the device's first point (samples carry ``first_index + i`` for its i-th point).
      Import the protocol library inside ``make`` (or in ``driver.py`` imported there), so that a
      gateway without such a device never loads it;
    - ``runner``: POLLED or PUSHED, or a function of the device config (OPC UA: subscription or polling);
    - ``poll_settings(device, driver)``: the runner settings of a polled device (default PollSettings());
    - ``shared()``: made once per gateway and handed to every ``make`` of this package (connections that
      devices share, e.g. one RS-485 line); None: ``make`` gets None;
    - ``keep_shared(shared, kept)``: on a config reload, what the new drivers of this package share,
      given the old shared object and the package's devices that keep running (Modbus: the lines of
      the kept devices stay open, every other line is made afresh); None: ``shared()`` anew;
    - ``config_issues(devices)``: checks across devices (all of ``[[devices]]``, pick yours with
      isinstance), as located issues (``devices[3].port``);
    - ``security_warnings(device, where)``: settings of one device that work but weaken security;
    - ``tags``: the tag-list import of ``edgegw import-tags <name>`` (:class:`TagImport`), if any;
    - ``lean(device, shared)``: the device's settings without its points, and the compact, picklable
      form its driver keeps of them (``shared``: a ``shared()`` of the process that computes it); with
      ``make_lean(lean_device, form, first_index, shared)`` the driver is made from the two.  A gateway
      reads and validates its config in a child process and gets only these back, so the parsed point
      models never exist in its own heap (#17); a package without them gets its whole device model.
    """

    name: str
    models: tuple[type[D], ...]
    make: Callable[[D, int, Any], PollingDriver | StreamingDriver]
    runner: RunnerKind | Callable[[D], RunnerKind] = RunnerKind.POLLED
    poll_settings: Callable[[D, Any], PollSettings] | None = None
    shared: Callable[[], object] | None = None
    keep_shared: Callable[[Any, Sequence[D]], object] | None = None
    config_issues: Callable[[Sequence[DeviceBase]], list[ConfigIssue]] | None = None
    security_warnings: Callable[[D, str], list[ConfigIssue]] | None = None
    tags: TagImport | None = None
    lean: Callable[[D, Any], tuple[D, object]] | None = None
    make_lean: Callable[[D, Any, int, Any], PollingDriver | StreamingDriver] | None = None

    @property
    def types(self) -> tuple[str, ...]:
        """The ``type`` values of this package's devices, from the ``Literal`` of each model."""
        out: list[str] = []
        for model in self.models:
            field = model.model_fields.get("type")
            args = typing.get_args(field.annotation) if field is not None else ()
            if not args or not all(isinstance(a, str) for a in args):
                raise TypeError(f"{model.__name__} needs a field `type: Literal[\"...\"]` (driver {self.name})")
            out.extend(args)
        return tuple(out)

    def owns(self, dev: DeviceBase) -> bool:
        return isinstance(dev, self.models)

    def runner_kind(self, dev: D) -> RunnerKind:
        return self.runner if isinstance(self.runner, RunnerKind) else self.runner(dev)
