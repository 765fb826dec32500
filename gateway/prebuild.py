"""A config read, validated and compiled in a child process: the gateway gets only the compact result.

Reading a config of N points makes the file's text, ``tomllib``'s objects and the parsed models
(about 2.4 KB a point together) while the point table is built beside them.  Built in the gateway's
own heap, the long-lived table ends up spread over the allocator's arenas that the temporaries used,
and an arena goes back to the system only when all of it is free: the running gateway kept about 1 KB
a point it did not use (#17, docs/benchmarks.md "Memory per configured point").

So ``edgegw run`` (and its live reload) parses in a forked child: the child reads and checks the file
and builds the point table, each device's digest (for reloads) and the compact form each driver keeps
of its points (Modbus: a layout per point), and hands back a :class:`Prebuilt` (pickled, over a
pipe): the config's sections and its devices without their points, plus those.  The gateway is then
built from it: its heap only ever holds what it keeps, made in one go.  A config error reaches the
caller as the same :class:`ConfigError` (issues, source, positions in the file).

Where there is no ``fork`` (not POSIX), the function runs in this process: the same result, the
memory as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.config import Config
from gateway.core.errors import ConfigError, ConfigReadFailed
from gateway.driver_registry import DriverFactory
from gateway.reload import device_digests

__all__ = ["Prebuilt", "in_child", "prebuild"]

T = TypeVar("T")


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


def in_child(fn: Callable[[], T], *, quiet: bool = False, timeout_s: float | None = None) -> T:
    """``fn()`` run in a forked child process, its result pickled back; a :class:`ConfigError` it
    raises is raised here as the same error.  Any other exception is raised here as a :class:`ConfigReadFailed`
    with the child's traceback.  ``fn`` only reads and computes.  ``quiet``: the child logs and
    prints nothing (where other threads run, as in a running gateway's reload: one of them may have
    held the lock of stderr's buffer at the moment of the fork, and the child would wait for it
    forever); at start-up, with no other thread yet, the child logs its phases.  ``timeout_s``: a
    child that has not answered by then (hung, or stopped by a debugger) is killed and this raises
    a :class:`ConfigReadFailed`, so a reload can never wait forever."""
    if not hasattr(os, "fork"):
        return fn()
    read_fd, write_fd = os.pipe()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(fn, write_fd, quiet)
    os.close(write_fd)
    try:
        data = _read_all(read_fd, None if timeout_s is None else time.monotonic() + timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise ConfigReadFailed(f"the process reading the config gave no result within {timeout_s:g} s "
                               "and was stopped") from None
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if not data:
        raise ConfigReadFailed(f"the process reading the config ended without a result ({_how_it_ended(status)})")
    kind, payload = pickle.loads(data)
    del data
    if kind == "ok":
        return payload  # type: ignore[no-any-return]
    if kind == "config":
        issues, source, positions = payload
        err = ConfigError(issues, source)
        err.positions = positions
        raise err
    raise ConfigReadFailed(f"reading the config failed in its process:\n{payload}")


def _how_it_ended(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exit status {code}"
    sig = signal.Signals(-code)
    if sig is signal.SIGINT:  # Ctrl-C reached the whole process group: this process was interrupted too
        raise KeyboardInterrupt
    if sig is signal.SIGKILL:
        return "exit status -9: killed, by the kernel when memory ran out or by hand"
    return f"exit status {code}: ended by {sig.name}"


def _read_all(fd: int, deadline: float | None) -> bytes:
    """Everything written to the pipe until the writer closed it; TimeoutError past ``deadline``."""
    chunks: list[bytes] = []
    while True:
        if deadline is not None:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _child(fn: Callable[[], object], fd: int, quiet: bool) -> None:
    code = 0
    try:
        if quiet:
            logging.disable(logging.CRITICAL)
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the process ends with os._exit
        # a signal meant for the gateway (SIGTERM from systemd to the whole group) ends this process
        # quietly instead of running the gateway's handlers here
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        try:
            out: tuple[str, object] = ("ok", fn())
        except ConfigError as err:
            out = ("config", (err.issues, err.source, err.positions))
        except BaseException:  # reported to the parent, which raises it  # noqa: BLE001
            out = ("crash", traceback.format_exc())
        data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(data)
    except BaseException:  # noqa: BLE001 - a child must never return into the parent's code
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)
