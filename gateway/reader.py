"""The processes that read a config for ``edgegw run``: a forked child, or a fresh interpreter.

:func:`in_child` runs a function in a forked child and gets its result back pickled (how and why:
:mod:`gateway.prebuild`).  ``edgegw run`` forks its reader before it imports any config model, then
switches its own process to plain mode (:mod:`gateway.core.plain`: the models without pydantic).  A
fork of that process has the plain classes and could not validate, so the live reload's reader is a
fresh interpreter instead: :func:`in_new_process`, which imports the
real models and gets what it needs of the running gateway pickled.  Both raise a reader's
:class:`ConfigError` here as the same error, and anything else as a :class:`ConfigReadFailed`.

This module imports no config model (nor pydantic): it is imported first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.core.errors import ConfigError, ConfigReadFailed

__all__ = ["in_child", "in_new_process"]

T = TypeVar("T")


def in_child(fn: Callable[[], T], *, quiet: bool = False, timeout_s: float | None = None,
             meanwhile: Callable[[], object] | None = None) -> T:
    """``fn()`` run in a forked child process, its result pickled back; a :class:`ConfigError` it
    raises is raised here as the same error.  Any other exception is raised here as a :class:`ConfigReadFailed`
    with the child's traceback.  ``fn`` only reads and computes.  ``quiet``: the child logs and
    prints nothing (where other threads run, as in a running gateway's reload: one of them may have
    held the lock of stderr's buffer at the moment of the fork, and the child would wait for it
    forever); at start-up, with no other thread yet, the child logs its phases.  ``timeout_s``: a
    child that has not answered by then (hung, or stopped by a debugger) is killed and this raises
    a :class:`ConfigReadFailed`, so a reload can never wait forever.  ``meanwhile``: run in this
    process while the child works (``edgegw run`` imports the gateway's modules).

    Where there is no ``fork`` (not POSIX), ``fn`` runs in this process: the same result, the memory
    as before."""
    if not hasattr(os, "fork"):
        if meanwhile is not None:
            meanwhile()
        return fn()
    read_fd, write_fd = os.pipe()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(fn, write_fd, quiet)
    os.close(write_fd)
    return _collect(pid, read_fd, timeout_s, meanwhile)  # type: ignore[no-any-return]


def _collect(pid: int, read_fd: int, timeout_s: float | None, meanwhile: Callable[[], object] | None = None) -> Any:
    """The result of the reader ``pid`` that writes to ``read_fd`` (closed here), once it ended; the
    reader is killed (and reaped) past ``timeout_s`` or when this process is interrupted."""
    try:
        if meanwhile is not None:
            meanwhile()
        data = _read_all(read_fd, None if timeout_s is None else time.monotonic() + timeout_s)
    except TimeoutError:
        _stop(pid)
        raise ConfigReadFailed(f"the process reading the config gave no result within {timeout_s:g} s "
                               "and was stopped") from None
    except BaseException:
        _stop(pid)
        raise
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    return _result(data, os.waitstatus_to_exitcode(status))


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


# the new interpreter's program: this process's sys.path (the same modules, however this one was
# started: installed, from a checkout, with PYTHONPATH), then _main
_BOOT = "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from gateway.reader import _main; _main()"


def in_new_process(fn: Callable[..., T], *args: object, timeout_s: float | None = None) -> T:
    """``fn(*args)`` run in a fresh Python interpreter (this one's executable), as
    :func:`in_child` runs it in a fork (quiet: the reader logs and prints nothing), with the same
    errors.  ``fn`` is pickled by name (a function of a module) and ``args`` by value: a plain-mode
    model loads as pydantic's there.  The reader has this process's ``sys.path``.  For a process that
    cannot fork a reader of its own (a plain-mode gateway)."""
    import subprocess
    import tempfile

    if getattr(fn, "__module__", "__main__") == "__main__":  # a name the new interpreter cannot find
        raise TypeError(f"{fn!r}: give a function of an importable module (this one is __main__'s)")
    # the reader's stdin: a file in memory (Linux), else a temporary file (nothing can block on it)
    made = os.memfd_create("edgegw-reload-input") if hasattr(os, "memfd_create") else None
    with os.fdopen(made, "w+b") if made is not None else tempfile.TemporaryFile() as given:
        pickle.dump((fn, args), given, protocol=pickle.HIGHEST_PROTOCOL)
        given.seek(0)
        read_fd, write_fd = os.pipe()
        try:
            try:
                proc = subprocess.Popen(  # this interpreter, with this process's module path
                    [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(write_fd)], stdin=given,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,), close_fds=True,
                )
            finally:
                os.close(write_fd)
        except OSError as err:
            os.close(read_fd)
            raise ConfigReadFailed(f"the process to read the config could not be started: {err}") from None
        # _collect waits for it (os.waitpid): the Popen object only started it and must not reap it too
        proc.returncode = 0
        return _collect(proc.pid, read_fd, timeout_s)  # type: ignore[no-any-return]


def _result(data: bytes, code: int) -> Any:
    """What a reader sent (``data``), given how it ended (its exit code, -N for signal N)."""
    if not data:
        raise ConfigReadFailed(f"the process reading the config ended without a result ({_how_it_ended(code)})")
    kind, payload = pickle.loads(data)
    del data
    if kind == "ok":
        return payload
    if kind == "config":
        issues, source, positions = payload
        err = ConfigError(issues, source)
        err.positions = positions
        raise err
    raise ConfigReadFailed(f"reading the config failed in its process:\n{payload}")


def _how_it_ended(code: int) -> str:
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


def _main() -> None:
    """The new interpreter of :func:`in_new_process`: (function, arguments) pickled on stdin, the result
    to the pipe whose descriptor is the last argument."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # as early as can be: see _child
        signal.signal(sig, signal.SIG_DFL)

    def call() -> object:
        fn, args = pickle.load(sys.stdin.buffer)
        return fn(*args)

    _child(call, int(sys.argv[-1]), quiet=True)
