"""A config read, validated and compiled in a child process: the gateway gets only the compact result.

Reading a config of N points makes the file's text, ``tomllib``'s objects and the parsed models
(about 2.4 KB a point together) while the point table is built beside them.  Built in the gateway's
own heap, the long-lived table ends up spread over the allocator's arenas that the temporaries used,
and an arena goes back to the system only when all of it is free: the running gateway kept about 1 KB
a point it did not use (#17, docs/benchmarks.md "Memory per configured point").

So ``edgegw run`` (and its live reload) parses in another process (a forked child at start, a new
interpreter for a reload: the gateway's own process has no pydantic, :mod:`gateway.core.plain`): it
reads and checks the file and builds the point table, each device's digest (for reloads) and the
compact form each driver keeps of its points (Modbus: a layout per point), and hands back a
:class:`Prebuilt` (pickled, over a pipe): the config's sections and its devices without their points,
plus those.  The gateway is then
built from it: its heap only ever holds what it keeps, made in one go.  A config error reaches the
caller as the same :class:`ConfigError` (issues, source, positions in the file).

The processes themselves are :mod:`gateway.reader`'s (it imports no config model: ``edgegw run``
starts its reader before it imports any).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.catalog import without_rows
from gateway.config import Config, policy_issues
from gateway.core.errors import ConfigError
from gateway.driver_registry import DriverFactory
from gateway.reader import in_child, in_new_process
from gateway.reload import device_digests, plan_reload

__all__ = ["Prebuilt", "in_child", "in_new_process", "prebuild", "prepare_reload", "read_for_reload", "with_http"]


@dataclass(frozen=True, slots=True)
class Prebuilt:
    """A config without its point models: ``cfg`` has the sections, and its devices, where their
    package has a compact form (:attr:`gateway.core.driver.DriverSpec.lean`), without their points;
    ``cfg.catalog()`` is the point table of the full config.  ``digests``: each device's
    :func:`gateway.reload.device_digest` (of the full device); ``forms``: device name -> the compact
    form its driver is made from; ``points``: the number of configured points; ``not_applied``: for a
    reload (:meth:`gateway.app.Gateway.prepare_reload`), the keys that wait for a restart (their running
    values are already in ``cfg``); ``rows_kept``: for a reload, the devices whose rows ``cfg``'s point
    table leaves out (:func:`gateway.catalog.without_rows`: unchanged, they keep their running rows)."""

    cfg: Config
    digests: Mapping[str, bytes]
    forms: Mapping[str, object] = field(default_factory=dict)
    points: int = 0
    not_applied: tuple[str, ...] = ()
    rows_kept: frozenset[str] = frozenset()


def prebuild(cfg: Config, digests: Mapping[str, bytes] | None = None) -> Prebuilt:
    """The :class:`Prebuilt` of a validated config (in this process; :func:`in_child` runs it in another)."""
    catalog = cfg.catalog()
    digests = dict(digests) if digests is not None else device_digests(cfg)
    factory = DriverFactory()  # equal layouts stored once across the devices of a package
    devices = []
    forms: dict[str, object] = {}
    for dev in cfg.devices:
        lean, form = factory.lean(dev)
        devices.append(lean)
        if form is not None:
            forms[dev.name] = form
    slim = cfg.model_copy(update={"devices": devices})
    # the table of the full config, kept as this copy's own (Config.catalog's key: its sections)
    slim._catalog = ((slim.gateway, slim.devices, slim.data_policy), catalog)
    return Prebuilt(slim, digests, forms, len(catalog.points))




def prepare_reload(running: Config, running_digests: Mapping[str, bytes], new: Config) -> Prebuilt:
    """:meth:`gateway.app.Gateway.prepare_reload` of a gateway running ``running`` (its
    :func:`gateway.reload.running_config`, whose devices have the digests ``running_digests``): a
    function of the two, so that a process other than the gateway's can run it."""
    plan = plan_reload(running, new, running_digests)
    eff = plan.effective
    refused = policy_issues(eff)
    if refused:
        raise ConfigError(refused, "the new config with the settings kept until a restart")
    built = prebuild(eff, plan.digests)
    # the unchanged devices keep their rows of the running table (relayout): theirs are not
    # handed over, nor unpickled in the gateway only to be dropped (holes in its heap, #17)
    slim = built.cfg
    slim._catalog = ((slim.gateway, slim.devices, slim.data_policy),
                     without_rows(slim.catalog(), plan.same_layout))
    return dataclasses.replace(built, not_applied=plan.not_applied, rows_kept=plan.same_layout)


def with_http(cfg: Config, listen: str | None) -> Config:
    """``--http HOST:PORT`` overrides (or adds) the config's [http] section."""
    from gateway.config import HttpSection

    if listen is None:
        return cfg
    return cfg.model_copy(update={"http": HttpSection(listen=listen)})


def read_for_reload(path: str | os.PathLike[str], listen: str | None, running: Config | None = None,
                    digests: Mapping[str, bytes] | None = None,
                    prepare: Callable[[Config], Prebuilt] | None = None) -> Prebuilt:
    """In the reading process of ``edgegw run``'s live reload: the file read with ``--http``
    ``listen``, given the start's file checks, and prepared against the running config: by
    ``prepare`` (the gateway's own, where this process is a fork of it), else from ``running`` and its
    ``digests`` (handed over to a fresh interpreter, :func:`gateway.reader.in_new_process`)."""
    from gateway.config import load
    from gateway.preflight import file_problems

    new = with_http(load(path), listen)
    files = file_problems(new, "edge")
    if files.errors:
        raise ConfigError(files.errors, str(path))
    if prepare is not None:
        return prepare(new)
    if running is None or digests is None:
        raise TypeError("read_for_reload needs the running config and its digests, or prepare")
    return prepare_reload(running, digests, new)
